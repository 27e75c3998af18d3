"""Multi-task model contract: which parameters are shared, which are task-specific, and how the
forward pass splits off the shared representation in rep-grad mode."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mtl.engine import Representation


class MultiTaskModel(nn.Module):
    """Base class. `forward(x, rep_grad=False)` returns ({task: prediction}, Representation|None)."""

    supports_rep_grad: bool = True

    def shared_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def task_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError


class HPS(MultiTaskModel):
    """Hard parameter sharing: one encoder, one head per task."""

    def __init__(self, encoder: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    def forward(self, x, rep_grad: bool = False, tasks: Sequence[str] | None = None):
        rep = self.encoder(x)
        split = None
        if rep_grad:
            split = Representation.split(rep)
            rep = split.leaf
        names = list(self.heads) if tasks is None else list(tasks)
        return {t: self.heads[t](rep) for t in names}, split

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


def count_parameters(params: Sequence[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)
