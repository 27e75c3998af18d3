"""DualProj (torchjd `aggregation.DualProj`; the projection of GEM, Lopez-Paz & Ranzato, NeurIPS 2017,
Eq. 11): the mean of the task gradients projected onto the dual cone of the task gradients, so the
update conflicts with no task.

As torchjd's `DualProjWeighting`: the Gram matrix G G^T is computed in the gradients' dtype,
divided by its trace (zero when the trace is below `norm_eps`), `reg_eps * I` is added, and with
the preference u = 1/T (also in the gradients' dtype, as `MeanWeighting`) the QP
min_v v^T Gram v s.t. v >= u (quadprog via qpsolvers, in float64) gives the weights; the update is
w @ G. UPGrad is the sum of T such projections (one per task's gradient); DualProj projects their
mean once. Heads get their plain gradients (`torchjd.mtl_backward`). A failed QP raises `SolverError`.
"""
from __future__ import annotations

import numpy as np
import torch

from mtl.methods.base import Aggregate
from mtl.methods.registry import register
from mtl.methods.upgrad import UPGrad


def dualproj_gram(G: torch.Tensor, norm_eps: float, reg_eps: float) -> torch.Tensor:
    """torchjd: normalize(compute_gramian(G), norm_eps), then regularize(., reg_eps), in G's dtype."""
    gram = G @ G.T
    trace = gram.diagonal().sum()
    gram = torch.where(trace < norm_eps, torch.zeros_like(gram), gram / trace)
    return gram + reg_eps * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)


@register
class DualProj(UPGrad):
    """UPGrad's constructor and QP (`project`), one projection of the mean preference, on a Gram
    matrix normalised in G's dtype as torchjd does."""

    name = "dualproj"

    def solve_weights(self, G: torch.Tensor) -> torch.Tensor:
        gram = dualproj_gram(G.detach(), self.norm_eps, self.reg_eps)
        T = gram.shape[0]
        u = torch.full((T,), 1 / T, dtype=gram.dtype, device=gram.device)
        v = self.project(u.cpu().numpy().astype(np.float64), gram.cpu().numpy().astype(np.float64))
        return torch.as_tensor(v, dtype=gram.dtype, device=G.device)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        return Aggregate(weights=self.solve_weights(G))
