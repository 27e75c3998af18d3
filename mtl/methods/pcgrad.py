"""PCGrad (Yu et al., NeurIPS 2020) as LibMTL `weighting/PCGrad.py` implements it.

For each task i, visit all tasks j (i included, as LibMTL does) in a fresh random order and, when
pc_i · g_j < 0, remove the component along the ORIGINAL g_j: pc_i -= (pc_i·g_j / ‖g_j‖²) g_j. The
shared update is the sum of the projected gradients (LibMTL reduction). Not available with
rep-grad (LibMTL raises). The orders come from torch's global RNG, so they follow the run seed.
"""
from __future__ import annotations

from typing import Sequence

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods.registry import register


def pcgrad(G: torch.Tensor, orders: Sequence[Sequence[int]] | None = None,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Returns (sum of projected gradients [D], projected gradients [T, D], number of projections).
    `orders[i]` is the visiting order for task i (random permutations of range(T) if None)."""
    T = G.shape[0]
    sq = G.pow(2).sum(1)
    pc = G.clone()
    conflicts = 0
    for i in range(T):
        order = orders[i] if orders is not None else torch.randperm(T, generator=generator).tolist()
        for j in order:
            dot = pc[i] @ G[j]
            if dot < 0:
                pc[i] -= dot * G[j] / sq[j]
                conflicts += 1
    return pc.sum(0), pc, conflicts


@register
class PCGrad(GradientMethod):
    name = "pcgrad"

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        direction, _, conflicts = pcgrad(G)
        return Aggregate(direction=direction, info={"projections": conflicts})
