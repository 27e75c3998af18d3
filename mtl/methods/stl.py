"""STL (single-task learning): loss = L[task]; the other heads get zero gradients.

Runs are organised per task: `method=stl method.task=<i> run.tag=_<i>` writes
results/runs/<benchmark>/stl_<i>/seed<s>/ (nash-mtl `--main-task`, IGB4MTL `stl`).
"""
import torch

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import TaskIndex
from mtl.methods.registry import register


@register
class STL(LossWeighting):
    name = "stl"
    hparams = {"task": TaskIndex()}

    def __init__(self, num_tasks: int, *, task: int = 0, **kw):
        super().__init__(num_tasks, **kw)
        self.task = int(task)

    def active_tasks(self) -> list[int]:
        return [self.task]

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        w = torch.zeros_like(losses)
        w[self.task] = 1.0
        return w
