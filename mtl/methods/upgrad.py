"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

As LibMTL UPGrad.py (PR #93, adapted from TorchJD): the Gram matrix G G^T is normalised by its
trace (set to zero when the trace is below `norm_eps`), `reg_eps * I` is added, and for each task's
preference u = e_t / T the QP  min_v v^T Gram v  s.t. v >= u  (quadprog via qpsolvers) gives the
weights of the projection of the task gradient onto the dual cone of the task gradients; the
weights are the sum of these solutions. The update sum_t w_t g_t then conflicts with no task
(g_t . d >= 0 up to the regularisation). Heads get their plain gradients (LibMTL mode='backward').
A failed QP (qpsolvers returns None or rejects the problem) raises `SolverError`.
"""
from __future__ import annotations

import numpy as np
import torch
from qpsolvers import available_solvers, solve_qp
from qpsolvers.exceptions import QPError

from mtl.errors import SolverError
from mtl.engine import gram64
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Real, Str
from mtl.methods.registry import register


@register
class UPGrad(GradientMethod):
    name = "upgrad"
    hparams = {"norm_eps": Real(ge=0), "reg_eps": Real(ge=0), "qp_solver": Str()}
    head_grads = "plain"

    def __init__(self, num_tasks: int, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                 qp_solver: str = "quadprog", **kwargs):
        super().__init__(num_tasks, **kwargs)
        if qp_solver not in available_solvers:
            raise SolverError(f"{self.name}: QP solver {qp_solver!r} not installed (available: {available_solvers}); "
                              f"run `pip install {qp_solver}`")
        self.norm_eps = norm_eps
        self.reg_eps = reg_eps
        self.qp_solver = qp_solver

    def project(self, u: np.ndarray, gram: np.ndarray) -> np.ndarray:
        """v minimising v^T gram v subject to v >= u."""
        T = gram.shape[0]
        try:
            v = solve_qp(gram, np.zeros(T), -np.eye(T), -u, solver=self.qp_solver)
        except (QPError, ValueError) as err:
            raise SolverError(f"{self.name}: QP rejected ({err}); normalised Gram {gram.tolist()}") from err
        if v is None or not np.all(np.isfinite(v)):
            raise SolverError(f"{self.name}: QP failed (no solution) for preference {u.tolist()}; "
                              f"normalised Gram {gram.tolist()}")
        return v

    def solve_weights(self, G: torch.Tensor) -> np.ndarray:
        gram = gram64(G).cpu().numpy()
        trace = np.trace(gram)
        gram = np.zeros_like(gram) if trace < self.norm_eps else gram / trace
        gram = gram + self.reg_eps * np.eye(gram.shape[0])
        T = gram.shape[0]
        prefs = np.eye(T) / T
        return np.sum([self.project(u, gram) for u in prefs], axis=0)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        w = self.solve_weights(G)
        return Aggregate(weights=torch.as_tensor(w, dtype=G.dtype, device=G.device))
