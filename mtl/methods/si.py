"""SI (scale-invariant): EW on log losses, sum_t log(L_t + 1e-8) (IGB4MTL `si`, nash-mtl
`scaleinvls`). The same as `method=ew method.loss_transform=log`; registered for convenience."""
from mtl.methods.ew import EW
from mtl.methods.registry import register


@register
class SI(EW):
    name = "si"

    def __init__(self, num_tasks: int, *, loss_transform: str = "log", **kw):
        super().__init__(num_tasks, loss_transform=loss_transform, **kw)
