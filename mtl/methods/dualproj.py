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
from qpsolvers import available_solvers, solve_qp
from qpsolvers.exceptions import QPError

from mtl.errors import SolverError
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Real, Str
from mtl.methods.registry import register


def dualproj_gram(G: torch.Tensor, norm_eps: float, reg_eps: float) -> torch.Tensor:
    """torchjd: normalize(compute_gramian(G), norm_eps), then regularize(., reg_eps), in G's dtype."""
    gram = G @ G.T
    trace = gram.diagonal().sum()
    gram = torch.where(trace < norm_eps, torch.zeros_like(gram), gram / trace)
    return gram + reg_eps * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)


@register
class DualProj(GradientMethod):
    name = "dualproj"
    hparams = {"norm_eps": Real(ge=0), "reg_eps": Real(ge=0), "qp_solver": Str()}
    head_grads = "plain"

    def __init__(self, num_tasks: int, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                 qp_solver: str = "quadprog", **kwargs):
        super().__init__(num_tasks, **kwargs)
        if qp_solver not in available_solvers:
            raise SolverError(f"dualproj: QP solver {qp_solver!r} not installed (available: {available_solvers}); "
                              f"run `pip install {qp_solver}`")
        self.norm_eps, self.reg_eps, self.qp_solver = norm_eps, reg_eps, qp_solver

    def solve_weights(self, G: torch.Tensor) -> torch.Tensor:
        gram = dualproj_gram(G.detach(), self.norm_eps, self.reg_eps)
        T = gram.shape[0]
        u = torch.full((T,), 1 / T, dtype=gram.dtype, device=gram.device)
        g64 = gram.cpu().numpy().astype(np.float64)
        u64 = u.cpu().numpy().astype(np.float64)
        try:
            v = solve_qp(g64, np.zeros(T), -np.eye(T), -u64, solver=self.qp_solver)
        except (QPError, ValueError) as err:
            raise SolverError(f"dualproj: QP rejected ({err}); normalised Gram {g64.tolist()}") from err
        if v is None or not np.all(np.isfinite(v)):
            raise SolverError(f"dualproj: QP failed (no solution); normalised Gram {g64.tolist()}")
        return torch.as_tensor(v, dtype=gram.dtype, device=G.device)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        return Aggregate(weights=self.solve_weights(G))
