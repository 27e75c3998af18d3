"""Nash-MTL (Navon et al., ICML 2022): task weights from the Nash bargaining solution.

The weights alpha > 0 solve alpha_i (G G^T alpha)_i = 1 (G: [T, D] task gradients). As in
LibMTL Nash_MTL.py / nash-mtl `NashMTL`, this is found by a sequential convex program: a cvxpy
problem built once with Parameters (Gram normalised by its Frobenius norm nf, previous alpha),
linearising the concave part at the previous iterate, solved with ECOS (max_iters 100, warm start)
up to `optim_niter` times from the previous step's alpha (initially ones), stopping when
||G_n alpha - 1/alpha|| < 1e-3 (normalised Gram, as the reference) or alpha moves < 1e-6. The
constraint -log(alpha_i nf) - log((G_n alpha)_i) <= 0 is alpha_i (G G^T alpha)_i >= 1 on the
*un-normalised* Gram; it is active at the solution. The update is sum_t alpha_t g_t with the
shared-gradient norm clipped to `max_norm`; heads get sum_t alpha_t grad L_t (the reference
finishes with a backward of sum alpha_t L_t).

Differences from the reference: it needs ECOS installed explicitly (cvxpy >= 1.6 no longer
ships it, and the reference's bare `except:` then silently keeps alpha = ones, i.e. EW + clipping);
a failed or non-optimal solve is counted, logged and reported per step as `solver_failures`
(`on_solver_error="count"`, the default: it keeps the last good alpha, which is what the
reference's numbers were produced with, e.g. when the linearised subproblem at alpha = ones is
unbounded because the summed gradient conflicts with a task) or raises `SolverError` ("raise").
The trainer prints the per-epoch failure count and summary.json carries the total.
ECOS "optimal_inaccurate" solves are accepted (as the reference) and counted in
`solver_inaccurate`; `nash_residual` = max_i |alpha_i (G G^T alpha)_i - 1| shows when the
linearisation stalled short of the bargaining solution (it can, for strongly rescaled
conflicting tasks, within optim_niter iterations from the warm start).

Speed: the subproblem is written as a DPP problem (see `_build_problem`), so cvxpy compiles it
once per run and every solve only substitutes parameter values (the reference's form divides by
Parameters, so cvxpy recompiled it on every one of up to `optim_niter` solves per step). The
Gram matrix is formed in float64 from the [T, D] gradients on their device; only the T x T result
goes to the host.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from mtl.engine import accumulate_grads, assign_flat_grad, gram64
from mtl.errors import SolverError
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Choice, Int, Real
from mtl.methods.registry import register

log = logging.getLogger(__name__)

ON_SOLVER_ERROR = ("raise", "count")


def _cvxpy():
    try:
        import cvxpy as cp
    except ImportError as err:  # pragma: no cover - cvxpy is a project dependency
        raise SolverError("Nash-MTL needs cvxpy with ECOS: `pip install cvxpy ecos`") from err
    return cp


@register
class NashMTL(GradientMethod):
    name = "nash_mtl"
    # the bargaining problem is between tasks; cvxpy rejects its 1x1 form ("Scalar operands ...")
    min_tasks = 2
    min_tasks_reason = "a bargaining solution between tasks"
    hparams = {"update_weights_every": Int(ge=1), "optim_niter": Int(ge=1),
               "max_norm": Real(ge=0),  # 0 turns the clipping off (as the reference)
               "on_solver_error": Choice(*ON_SOLVER_ERROR), "ecos_max_iters": Int(ge=1)}
    head_grads = "weighted"
    _state_attrs = ("prvs_alpha", "solver_failures_total", "_nash_step")

    def __init__(self, num_tasks: int, *, update_weights_every: int = 1, optim_niter: int = 20,
                 max_norm: float = 1.0, on_solver_error: str = "count", ecos_max_iters: int = 100,
                 **kwargs):
        super().__init__(num_tasks, **kwargs)
        cp = _cvxpy()
        if cp.ECOS not in cp.installed_solvers():
            raise SolverError(
                "Nash-MTL solves its bargaining problem with ECOS, which cvxpy >= 1.6 no longer installs "
                f"(installed: {cp.installed_solvers()}). Run `pip install ecos`."
            )
        self.update_weights_every = update_weights_every
        self.optim_niter = optim_niter
        self.max_norm = max_norm
        self.on_solver_error = on_solver_error
        self.ecos_max_iters = ecos_max_iters
        self.prvs_alpha = np.ones(num_tasks, dtype=np.float64)
        self.solver_failures_total = 0
        self._nash_step = 0
        self._build_problem()

    # ---- the convex program (built once) ------------------------------------------------------
    def _build_problem(self) -> None:
        """The linearised subproblem as a DPP problem (disciplined parametrized programming): every
        Parameter enters affinely, so cvxpy compiles it once and each solve only substitutes values.

        Reference form (parameters G_n = G G^T / nf, nf, previous iterate a0):
            min 1^T G_n a + phi(a) / nf,  phi(a) = (1/a0 + (1/(G_n a0)) G_n)^T (a - a0)
            s.t. -log(a_i nf) - log((G_n a)_i) <= 0.
        Here the linear coefficient c = (1/a0 + (1/(G_n a0)) G_n) / nf and log(nf) are computed in
        numpy and passed as Parameters, the constant -c^T a0 (no effect on the minimiser) is dropped
        and -log(a_i nf) is written -log(a_i) - log(nf): the same feasible set and minimiser."""
        cp = _cvxpy()
        T = self.num_tasks
        self._alpha = cp.Variable(shape=(T,), nonneg=True)
        self._gtg = cp.Parameter(shape=(T, T), value=np.eye(T))
        self._lin = cp.Parameter(shape=(T,), value=np.ones(T))
        self._log_nf = cp.Parameter(value=0.0)
        g_alpha = self._gtg @ self._alpha
        cons = [-cp.log(self._alpha) - self._log_nf - cp.log(g_alpha) <= 0]
        self._prob = cp.Problem(cp.Minimize(cp.sum(g_alpha) + self._lin @ self._alpha), cons)
        assert self._prob.is_dcp(dpp=True)  # compiled once, re-solved with new parameter values

    def _set_linearisation(self, gtg_n: np.ndarray, nf: float, prev: np.ndarray) -> None:
        self._lin.value = (1.0 / prev + (1.0 / (gtg_n @ prev)) @ gtg_n) / nf

    def _fail(self, msg: str, err: Exception | None = None) -> None:
        if self.on_solver_error == "raise":
            raise SolverError(f"nash_mtl: {msg}") from err
        self.solver_failures_total += 1
        log.warning("nash_mtl: %s; keeping the previous alpha (failure %d)", msg, self.solver_failures_total)

    def solve_weights(self, G: torch.Tensor) -> tuple[np.ndarray, dict]:
        """alpha for task gradients G [T, D], warm-started from the previous alpha."""
        cp = _cvxpy()
        gtg = gram64(G).cpu().numpy()
        nf = float(np.linalg.norm(gtg))
        failures, iters, inaccurate = 0, 0, 0
        alpha_t = self.prvs_alpha
        if not np.isfinite(nf) or nf <= 0:
            failures += 1
            self._fail(f"Gram matrix of the task gradients is zero or non-finite (Frobenius norm {nf})")
            return alpha_t, {"solver_failures": failures, "solver_inaccurate": 0, "nash_iters": 0,
                             "nash_residual": float("nan")}
        if np.any(np.diag(gtg) <= 0):
            failures += 1
            self._fail(f"task(s) {np.flatnonzero(np.diag(gtg) <= 0).tolist()} have a zero gradient: "
                       f"alpha_i (G G^T alpha)_i = 1 has no solution")
            return alpha_t, {"solver_failures": failures, "solver_inaccurate": 0, "nash_iters": 0,
                             "nash_residual": float("nan")}
        gtg_n = gtg / nf
        self._gtg.value = gtg_n
        self._log_nf.value = float(np.log(nf))
        for _ in range(self.optim_niter):
            self._alpha.value = alpha_t
            self._set_linearisation(gtg_n, nf, alpha_t)
            iters += 1
            try:
                self._prob.solve(solver=cp.ECOS, warm_start=True, max_iters=self.ecos_max_iters)
                status, new = self._prob.status, self._alpha.value
                ok = status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) and new is not None and np.all(np.isfinite(new))
                err = None
            except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
                ok, status, err = False, f"{type(exc).__name__}: {exc}", exc
            inaccurate += int(ok and status == cp.OPTIMAL_INACCURATE)
            if not ok:
                failures += 1
                self._fail(f"ECOS solve failed (status {status}) at inner iteration {iters}, "
                           f"Gram diagonal {np.diag(gtg).tolist()}", err)
                break
            if (np.linalg.norm(gtg_n @ alpha_t - 1 / (alpha_t + 1e-10)) < 1e-3
                    or np.linalg.norm(new - alpha_t) < 1e-6):
                break
            alpha_t = new
        self.prvs_alpha = np.asarray(alpha_t, dtype=np.float64)
        # how far the returned alpha is from alpha_i (G G^T alpha)_i = 1: the linearisation can stall
        # short of it (strongly rescaled, conflicting tasks), as in the reference
        residual = float(np.abs(self.prvs_alpha * (gtg @ self.prvs_alpha) - 1).max())
        return self.prvs_alpha, {"solver_failures": failures, "solver_inaccurate": inaccurate,
                                 "nash_iters": iters, "nash_residual": residual}

    # ---- GradientMethod -----------------------------------------------------------------------
    def _update_step(self) -> bool:
        return self._nash_step % self.update_weights_every == 0

    def _clip(self, direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """torch.nn.utils.clip_grad_norm_ on the shared gradient (coef max_norm / (norm + 1e-6))."""
        norm = direction.norm()
        if self.max_norm > 0:
            coef = torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)
            direction = direction * coef
        return direction, norm

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        info = {"solver_failures": 0}
        if self._update_step():
            _, info = self.solve_weights(G)
        self._nash_step += 1
        alpha = torch.as_tensor(self.prvs_alpha, dtype=G.dtype, device=G.device)
        direction, norm = self._clip(alpha @ G)
        info.update(solver_failures_total=self.solver_failures_total, shared_grad_norm=norm.detach())
        return Aggregate(weights=alpha, direction=direction, info=info)

    def _backward(self, losses, shared_params, task_params, rep):
        if self._update_step():
            return super()._backward(losses, shared_params, task_params, rep)
        # between weight updates the reference skips the per-task gradients: one weighted backward
        alpha = torch.as_tensor(self.prvs_alpha, dtype=losses.dtype, device=losses.device)
        params = list(shared_params) + list(task_params)
        grads = torch.autograd.grad((alpha * losses).sum(), params, allow_unused=True)
        self.engine.backward_passes += 1
        shared = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, shared_params)]
        flat = torch.cat([g.reshape(-1) for g in shared])
        self.engine.check(flat[None], [grads[len(shared_params):]])  # fp16: a skipped step leaves the count
        self._nash_step += 1
        direction, norm = self._clip(flat)
        assign_flat_grad(shared_params, direction)
        accumulate_grads(task_params, grads[len(shared_params):])
        return {"weights": alpha.detach(), "solver_failures": 0,
                "solver_failures_total": self.solver_failures_total, "shared_grad_norm": norm.detach()}
