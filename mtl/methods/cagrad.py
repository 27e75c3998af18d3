"""CAGrad (Liu et al., NeurIPS 2021) as LibMTL `weighting/CAGrad.py` implements it.

With the Gram matrix A = G Gᵀ (float64, CPU), g0 = ‖mean_t g_t‖ = sqrt(mean(A) + 1e-8) and
c = calpha·g0 + 1e-8, solve min_{w in simplex} wᵀA(1/T) + c·sqrt(wᵀAw + 1e-8) with scipy SLSQP
(bounds [0,1], sum w = 1, start uniform). Then g_w = Σ w_t g_t, λ = c/(‖g_w‖ + 1e-8),
g = mean_t g_t + λ g_w, divided by 1 (rescale 0), 1 + calpha² (rescale 1) or 1 + calpha
(rescale 2). LibMTL uses the mean (nash-mtl multiplies by T). The optimiser's `success` flag is
checked: a failed solve raises `SolverError` with scipy's message (LibMTL ignores it). Not
available with rep-grad (LibMTL raises).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from mtl.errors import SolverError
from mtl.engine import gram64
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Choice, Real
from mtl.methods.registry import register


def _slsqp(A: np.ndarray, calpha: float):
    T = A.shape[0]
    g0_norm = np.sqrt(A.mean() + 1e-8)
    x0 = np.ones(T) / T
    b = x0.copy()
    c = float(calpha * g0_norm + 1e-8)

    def objective(x):
        return float(x @ A @ b + c * np.sqrt(x @ A @ x + 1e-8))

    res = minimize(objective, x0, method="SLSQP", bounds=[(0.0, 1.0)] * T,
                   constraints=({"type": "eq", "fun": lambda x: 1.0 - x.sum()},))
    return res, c


def cagrad_solve(gram: np.ndarray, calpha: float) -> tuple[np.ndarray, float]:
    """The simplex weights w and the radius c of CAGrad's inner problem.

    Solved on the raw Gram as LibMTL does. If SLSQP fails there (its absolute tolerances break down
    for huge gradients, e.g. a Gram diagonal of 1e12), it is solved once more on the Gram divided by
    its mean diagonal: the objective is positively homogeneous of degree 1 in A (up to its 1e-8
    terms), so the minimiser is the same; c stays the raw-scale radius. Raises if both fail."""
    A = np.asarray(gram, dtype=np.float64)
    res, c = _slsqp(A, calpha)
    if not res.success:
        scale = float(np.mean(np.diag(A)))
        if np.isfinite(scale) and scale > 0:
            res, _ = _slsqp(A / scale, calpha)
    if not res.success:
        raise SolverError(f"CAGrad: scipy SLSQP failed ({res.message}); Gram diagonal {np.diag(A).tolist()}")
    return res.x, c


def cagrad(G: torch.Tensor, calpha: float = 0.5, rescale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (update direction [D], simplex weights w [T])."""
    if rescale not in (0, 1, 2):
        raise ValueError(f"CAGrad rescale must be 0, 1 or 2, got {rescale}")
    gram = gram64(G).cpu().numpy()
    w_np, c = cagrad_solve(gram, calpha)
    w = torch.as_tensor(w_np, dtype=G.dtype, device=G.device)
    gw = w @ G
    lmbda = c / (gw.norm() + 1e-8)
    g = G.mean(0) + lmbda * gw
    scale = {0: 1.0, 1: 1.0 + calpha ** 2, 2: 1.0 + calpha}[rescale]
    return g / scale, w


@register
class CAGrad(GradientMethod):
    name = "cagrad"
    hparams = {"calpha": Real(ge=0), "rescale": Choice(0, 1, 2)}

    def __init__(self, num_tasks: int, *, calpha: float = 0.5, rescale: int = 1, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.calpha = calpha
        self.rescale = rescale

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        direction, w = cagrad(G, self.calpha, self.rescale)
        return Aggregate(direction=direction, info={"simplex_weights": w})
