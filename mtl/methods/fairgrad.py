"""FairGrad (Ban & Ji, ICML 2024): alpha-fair resource allocation of the update among tasks.

As LibMTL FairGrad.py: with the Gram matrix A = G G^T, solve A w = w^(-1/alpha) for w >= 0 by
`scipy.optimize.least_squares` (bounds [0, inf), start 1/T), then the update is sum_t w_t g_t and
heads get sum_t w_t grad L_t (the reference finishes with a backward of sum w_t L_t).
The reference ignores the solver's status; here a failed solve (status <= 0, e.g. the evaluation
budget ran out, or a non-finite result) raises `SolverError`. The residual ||A w - w^(-1/alpha)||
is reported as `fairgrad_residual` (it is a least-squares fit: when no exact fixed point exists,
e.g. for exactly opposite gradients, the reference uses the best fit too).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import least_squares

from mtl.errors import SolverError
from mtl.engine import gram64
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Either, Int, Null, Real
from mtl.methods.registry import register


@register
class FairGrad(GradientMethod):
    name = "fairgrad"
    hparams = {"alpha": Real(gt=0), "max_nfev": Either(Null(), Int(ge=1))}
    head_grads = "weighted"

    def __init__(self, num_tasks: int, *, alpha: float = 1.0, max_nfev: int | None = None, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.alpha = alpha
        self.max_nfev = max_nfev  # None: scipy's default budget (as the reference)

    def solve_weights(self, G: torch.Tensor) -> tuple[np.ndarray, dict]:
        A = gram64(G).cpu().numpy()
        T = A.shape[0]

        def residual(x):
            return A @ x - np.power(1.0 / x, 1.0 / self.alpha)

        res = least_squares(residual, np.ones(T) / T, bounds=(0, np.inf), max_nfev=self.max_nfev)
        if res.status <= 0 or not np.all(np.isfinite(res.x)):
            raise SolverError(
                f"fairgrad: least_squares failed (status {res.status}: {res.message}); "
                f"Gram diagonal {np.diag(A).tolist()}"
            )
        return res.x, {"fairgrad_residual": float(np.linalg.norm(res.fun)), "fairgrad_nfev": int(res.nfev)}

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        w, info = self.solve_weights(G)
        return Aggregate(weights=torch.as_tensor(w, dtype=G.dtype, device=G.device), info=info)
