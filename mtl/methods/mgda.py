"""MGDA (Sener & Koltun, NeurIPS 2018): the min-norm point of the convex hull of the task gradients.

Follows LibMTL `weighting/MGDA.py` (a port of the authors' `MinNormSolver`): best pair from the
2-task closed form, then Frank-Wolfe-like projected steps on the simplex with an exact line
search, MAX_ITER 250, stop when the L1 change of the weights < 1e-5. The 2-task closed form keeps
LibMTL's clamp (0.999 / 0.001 instead of 1 / 0 when one gradient dominates the other).

Precision (`solver_dtype`): "float64" (default) runs the min-norm search in double precision;
"float32" runs it in single precision as LibMTL does (its solver works on the float32 gradients).
The weights differ by ~1e-4 after a few training steps.

Non-convergence: LibMTL returns None after MAX_ITER and then crashes in the next einsum. Here
the last iterate (a valid convex combination, not the exact min-norm point) is used and the step
is reported as a counted failure: diagnostics carry `solver_failures` (1 for that step, summed per
epoch by the trainer); `on_solver_error="raise"` raises `SolverError` instead.

Gradient normalisation `mgda_gn` (none | l2 | loss | loss+) divides g_t by 1, ||g_t||, L_t or
L_t ||g_t|| before solving. As in LibMTL, in param-grad mode the update is sum_t sol_t g_t / gn_t
(the normalised gradients), whereas in rep-grad mode the weights `sol` multiply the raw
representation gradients. Weights sum to 1 (LibMTL; nash-mtl's version multiplies by T).

Heads (`head_grads`): "plain" gives each head the plain gradient of its own loss (LibMTL
mode='backward', protocol A); "weighted" gives T·sol_t ∇L_t, as nash-mtl/IGB4MTL, which
backpropagate Σ T·sol_t L_t (protocol B). The shared update stays LibMTL's in both modes (nash-mtl's
is T·Σ sol_t g_t with raw g_t: T times larger, and not divided by the normalisers).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mtl.engine import accumulate_grads
from mtl.errors import SolverError
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Choice, Int
from mtl.methods.registry import register

MAX_ITER = 250
STOP_CRIT = 1e-5
NORMALISERS = ("none", "l2", "loss", "loss+")
HEAD_GRADS = ("plain", "weighted")
SOLVER_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class MinNormResult:
    weights: torch.Tensor  # [T] on the simplex
    converged: bool
    iterations: int


def _min_norm_from2(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """min_{g in [0,1]} ||g v1 + (1-g) v2||^2 from the Gram entries: (weight of v1, cost)."""
    if v12 >= v11:
        return 0.999, v11
    if v12 >= v22:
        return 0.001, v22
    gamma = -(v12 - v22) / (v11 + v22 - 2 * v12)
    return gamma, v22 + gamma * (v12 - v22)


def _projection_to_simplex(y: torch.Tensor) -> torch.Tensor:
    m = y.numel()
    s = torch.sort(y, descending=True)[0]
    tmax_f = (y.sum() - 1.0) / m
    tmpsum = 0.0
    for i in range(m - 1):
        tmpsum += s[i]
        tmax = (tmpsum - 1.0) / (i + 1.0)
        if tmax > s[i + 1]:
            tmax_f = tmax
            break
    return torch.clamp(y - tmax_f, min=0.0)


def _next_point(cur: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    n = cur.numel()
    proj = grad - grad.sum() / n
    neg, pos = proj < 0, proj > 0
    tm1 = -cur[neg] / proj[neg]
    tm2 = (1.0 - cur[pos]) / proj[pos]
    t = torch.ones((), dtype=cur.dtype)
    if (tm1 > 1e-7).any():
        t = tm1[tm1 > 1e-7].min()
    if (tm2 > 1e-7).any():
        t = torch.minimum(t, tm2[tm2 > 1e-7].min())
    return _projection_to_simplex(proj * t + cur)


def _quad(a: torch.Tensor, M: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a^T M b summed elementwise over the outer product, LibMTL's order of operations."""
    return (a.unsqueeze(1) * b.unsqueeze(0) * M).sum()


def find_min_norm_element(gram: torch.Tensor, max_iter: int = MAX_ITER, stop_crit: float = STOP_CRIT,
                          dtype: torch.dtype = torch.float64) -> MinNormResult:
    """Weights w on the simplex minimising w^T gram w (gram = G G^T, [T, T]). Every quantity of the
    search is a tensor of `dtype` (float32: LibMTL's precision, it runs on the gradients' dtype)."""
    M = gram.detach().cpu().to(dtype)
    n = M.shape[0]
    if n == 1:
        return MinNormResult(torch.ones(1, dtype=dtype), True, 0)
    best = None
    for i in range(n):
        for j in range(i + 1, n):
            c, d = _min_norm_from2(M[i, i], M[i, j], M[j, j])
            if best is None or d < best[3]:
                best = (i, j, c, d)
    sol = torch.zeros(n, dtype=dtype)
    sol[best[0]], sol[best[1]] = best[2], 1 - best[2]
    if n < 3:
        return MinNormResult(sol, True, 0)
    for it in range(1, max_iter + 1):
        new_point = _next_point(sol, -1.0 * (M @ sol))
        v11, v12, v22 = _quad(sol, M, sol), _quad(sol, M, new_point), _quad(new_point, M, new_point)
        nc, _ = _min_norm_from2(v11, v12, v22)
        new_sol = nc * sol + (1 - nc) * new_point
        if (new_sol - sol).abs().sum() < stop_crit:
            return MinNormResult(sol, True, it)
        sol = new_sol
    return MinNormResult(sol, False, max_iter)


def gradient_normalisers(G: torch.Tensor, losses: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-task divisors of LibMTL's `mgda_gn` (zero norms are clamped to 1e-12, LibMTL gives NaN)."""
    if kind == "none":
        return torch.ones(G.shape[0], dtype=G.dtype, device=G.device)
    norms = G.norm(dim=1).clamp_min(1e-12)
    if kind == "l2":
        return norms
    if kind == "loss":
        return losses.to(G.dtype)
    if kind == "loss+":
        return losses.to(G.dtype) * norms
    raise ValueError(f"mgda_gn {kind!r} unknown; choose one of {NORMALISERS}")


@register
class MGDA(GradientMethod):
    name = "mgda"
    hparams = {"mgda_gn": Choice(*NORMALISERS), "max_iter": Int(ge=1), "on_solver_error": Choice("count", "raise"),
               "head_grads": Choice(*HEAD_GRADS), "solver_dtype": Choice(*sorted(SOLVER_DTYPES))}
    supports_rep_grad = True
    _state_attrs = ("solver_failures_total",)

    def __init__(self, num_tasks: int, *, mgda_gn: str = "none", max_iter: int = MAX_ITER,
                 on_solver_error: str = "count", head_grads: str = "plain", solver_dtype: str = "float64",
                 **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.solver_dtype = solver_dtype
        self.head_grads = head_grads
        self.mgda_gn = mgda_gn
        self.max_iter = max_iter
        self.on_solver_error = on_solver_error
        self.solver_failures_total = 0

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        gn = gradient_normalisers(G, losses, self.mgda_gn)
        Gn = G / gn.unsqueeze(1)
        res = find_min_norm_element(Gn @ Gn.T, max_iter=self.max_iter, dtype=SOLVER_DTYPES[self.solver_dtype])
        if not res.converged:
            self.solver_failures_total += 1
            if self.on_solver_error == "raise":
                raise SolverError(f"{self.name}: min-norm solver did not converge in {self.max_iter} "
                                  f"iterations (L1 change >= {STOP_CRIT}); last weights {res.weights.tolist()}")
        sol = res.weights.to(G.dtype).to(G.device)
        weights = sol if self.rep_grad else sol / gn
        return Aggregate(weights=weights, info={"min_norm_weights": sol, "solver_failures": int(not res.converged),
                                                "solver_iterations": res.iterations})

    def objective_weights(self, info: dict) -> torch.Tensor:
        """Weights of the loss nash-mtl/IGB4MTL backpropagate after MGDA: T·sol (used by `combo`)."""
        return self.num_tasks * info["min_norm_weights"]

    def _assign_heads(self, task_params, grads, agg: Aggregate) -> None:
        if self.head_grads == "weighted":  # nash-mtl: the loss weights are T * sol
            accumulate_grads(task_params, grads.task_param_grads(self.num_tasks * agg.info["min_norm_weights"]))
        else:
            super()._assign_heads(task_params, grads, agg)


@register
class MGDAUB(MGDA):
    """MGDA-UB: MGDA on the gradients of the shared representation (the upper bound of the paper)."""

    name = "mgda_ub"

    def __init__(self, num_tasks: int, *, rep_grad: bool = True, **kwargs):
        super().__init__(num_tasks, rep_grad=rep_grad, **kwargs)
