"""RLW (random loss weighting): weights softmax(z), z ~ N(0, I) redrawn every step.

LibMTL (weighting/RLW.py, dist='Normal') and nash-mtl (methods/weight_methods.py RLW) use plain
softmax (weights sum to 1); IGB4MTL (methods/loss_weight_methods.py RLW) uses K * softmax (weights
sum to K): `scale_by_num_tasks=true`. The draw uses torch's global CPU
generator, so runs are reproducible under the run seed.
"""
import torch

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Bool
from mtl.methods.registry import register


@register
class RLW(LossWeighting):
    name = "rlw"
    hparams = {"scale_by_num_tasks": Bool()}

    def __init__(self, num_tasks: int, *, scale_by_num_tasks: bool = False, **kw):
        super().__init__(num_tasks, **kw)
        self.scale_by_num_tasks = bool(scale_by_num_tasks)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(torch.randn(self.num_tasks), dim=-1).to(losses.device, losses.dtype)
        return w * self.num_tasks if self.scale_by_num_tasks else w
