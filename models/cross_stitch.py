"""Cross-stitch networks over ResNet encoders (LibMTL architecture/Cross_stitch.py; Misra et al.,
CVPR 2016).

One ResNet per task. Before stages 2, 3 and 4, task t's input is sum_j a[s, t, j] * (task j's
output of the previous stage), with a learnable [4, T, T] cross unit initialised to ones (LibMTL;
only its first three slices are used). Each task's head reads its own stage-4 output.

Parameter split as LibMTL (`get_share_params` = the whole encoder): shared = all T ResNets and
the cross unit; task-specific = the heads. Per-task representations: no rep-grad mode.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from mtl.models.base import MultiTaskModel
from mtl.models.resnet import ResNetEncoder
from mtl.errors import InvalidCombination


class CrossStitch(MultiTaskModel):
    supports_rep_grad = False

    def __init__(self, make_encoder: Callable[[], ResNetEncoder], heads: dict[str, nn.Module]):
        super().__init__()
        self.task_names = list(heads)
        self.encoders = nn.ModuleDict({t: make_encoder() for t in self.task_names})
        self.heads = nn.ModuleDict(heads)
        T = len(self.task_names)
        self.cross_unit = nn.Parameter(torch.ones(4, T, T))

    def forward(self, x, rep_grad: bool = False, tasks: Sequence[str] | None = None):
        if rep_grad:
            raise InvalidCombination("Cross-stitch has one representation per task; rep_grad=True "
                                     "is not supported (use rep_grad=false)")
        names = self.task_names
        reps = [self.encoders[t].layer1(self.encoders[t].stem(x)) for t in names]
        for s in range(1, 4):
            mixed = [sum(self.cross_unit[s - 1, k, j] * reps[j] for j in range(len(names)))
                     for k in range(len(names))]
            reps = [self.encoders[t].layers[s](mixed[k]) for k, t in enumerate(names)]
        wanted = names if tasks is None else list(tasks)
        return {t: self.heads[t](reps[names.index(t)]) for t in wanted}, None

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoders.parameters()) + [self.cross_unit]

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())
