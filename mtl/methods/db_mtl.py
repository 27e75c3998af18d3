"""DB-MTL (dual balancing), exactly as LibMTL weighting/DB_MTL.py, plus an opt-in rep-grad variant.

`db_mtl` (faithful): losses -> log(L + 1e-8) (loss balancing); per-task shared gradients g_t
(T backward passes; heads get the plain gradient of their own log loss); EMA buffer, zero-initialised
and without bias correction, buf_t <- beta_k buf_t + (1 - beta_k) g_t with beta_k = beta / k^sigma;
u_t = ||buf_t|| over the whole flattened shared vector; update sum_t alpha_t buf_t with
alpha_t = a_k / (u_t + 1e-8), a_k = max_s u_s (gradient-magnitude balancing): every task contributes
a vector of norm ~a_k.

Knobs for the paper's studies: `alpha` = max | min | mean | median | a number c (constant a_k = c);
`beta`, `beta_sigma` (0.5 gives the decaying beta / sqrt(k) of Fig. 5); `loss_transform` identity|log
and `balance_grads` (Table 5: with balance_grads=false the shared gradient is the plain sum of the
(transformed) task gradients, one backward pass; log + no balancing = SI).

`db_mtl_rep` (beyond the references, opt-in): the same balancing on gradients w.r.t. the shared
representation. The EMA runs over the batch-summed representation gradients G_t ([T, F], fixed shape
whatever the batch size); its norms u_t give weights w_t = a_k / (u_t + 1e-8) that multiply the
current per-sample representation gradients, followed by one backward through the encoder. Only the
magnitudes are momentum-averaged, not the direction, so it is not numerically DB-MTL; it costs
about one encoder backward instead of T.

Speed (loop engine, the default): during each task's backward pass, a post-accumulate hook on every
shared parameter folds that parameter's gradient into its row of the [T, D] EMA buffer (`lerp_` on a
per-parameter view) and takes its norm the moment autograd has produced it, while it is still in
cache, then frees it: no [T, D] copy of the gradients is made and at most one parameter's gradient
is alive at a time. The update is written into each `.grad` by one `addmv` per parameter; what
`.grad` held before the step is kept and added to, as `.backward()` does. The batched engine and `grad_engine=auto`'s first step take the generic
path (the [T, D] Jacobian, then the same arithmetic).
"""
from __future__ import annotations

import torch

from mtl.engine import flat_dim
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Bool, Choice, Either, Real
from mtl.methods.registry import register

NORM_EPS = 1e-8  # LibMTL DB_MTL.py: max_s u_s / (u_t + 1e-8)
ALPHA_STRATEGIES = ("max", "min", "mean", "median")


def alpha_scale(u: torch.Tensor, alpha) -> torch.Tensor:
    """The common magnitude a_k every task is rescaled to (median: mean of the middle two for even T)."""
    if isinstance(alpha, str):
        if alpha == "max":
            return u.max()
        if alpha == "min":
            return u.min()
        if alpha == "mean":
            return u.mean()
        if alpha == "median":
            return torch.quantile(u, 0.5)
    return u.new_tensor(float(alpha))


@register
class DBMTL(GradientMethod):
    name = "db_mtl"
    hparams = {"beta": Real(ge=0, lt=1), "beta_sigma": Real(ge=0),
               "alpha": Either(Choice(*ALPHA_STRATEGIES), Real(gt=0)), "balance_grads": Bool()}
    _state_attrs = ("grad_buffer", "db_step")

    def __init__(self, num_tasks: int, *, beta: float = 0.9, beta_sigma: float = 0.0, alpha="max",
                 balance_grads: bool = True, loss_transform: str = "log", **kw):
        super().__init__(num_tasks, loss_transform=loss_transform, **kw)
        self.alpha = alpha if isinstance(alpha, str) else float(alpha)
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.balance_grads = bool(balance_grads)
        self.grad_buffer: torch.Tensor | None = None
        self.db_step = 0

    def _backward(self, losses, shared_params, task_params, rep):
        if self.balance_grads:
            # the streamed loop updates the EMA task by task; under fp16 loss scaling the whole
            # Jacobian is checked for inf/NaN first (a skipped step must not touch the EMA)
            if self.rep_grad or self.engine.chosen != "loop" or self.engine.check_finite:
                return super()._backward(losses, shared_params, task_params, rep)
            return self._backward_streamed(losses, shared_params, task_params)
        # Table 5 ablation without gradient balancing: plain sum of the (transformed) losses.
        losses.sum().backward()
        self.engine.backward_passes += 1
        if self.rep_grad:
            rep.value.backward(rep.leaf.grad)
        return {"weights": torch.ones_like(losses).detach()}

    def _buffer_for(self, shape, like: torch.Tensor) -> torch.Tensor:
        """The [T, D] EMA buffer (zero-initialised on first use) after advancing the step count."""
        self.db_step += 1
        if self.grad_buffer is None:
            self.grad_buffer = torch.zeros(shape, dtype=like.dtype, device=like.device)
        elif tuple(self.grad_buffer.shape) != tuple(shape):
            raise RuntimeError(f"{self.name}: gradient shape changed from {tuple(self.grad_buffer.shape)} "
                               f"to {tuple(shape)}; the EMA buffer cannot follow")
        return self.grad_buffer

    @property
    def _beta_k(self) -> float:
        return self.beta / self.db_step ** self.beta_sigma

    def _update_buffer(self, G: torch.Tensor) -> torch.Tensor:
        buf = self._buffer_for(G.shape, G)
        buf.lerp_(G, 1.0 - self._beta_k)  # beta_k * buf + (1 - beta_k) * g, in place
        return buf

    def _backward_streamed(self, losses, shared, task):
        """Loop engine: T backward passes; each parameter's gradient is folded into its EMA row by a
        post-accumulate hook the moment autograd produces it (still in cache), then freed."""
        T = losses.shape[0]
        sizes = [p.numel() for p in shared]
        buf = self._buffer_for((T, flat_dim(shared)), shared[0])
        beta_k = self._beta_k
        rows = [torch.split(buf[t], sizes) for t in range(T)]  # contiguous per-parameter views
        held = [p.grad for p in shared]  # what .grad held before: kept, the update adds to it
        index = {id(p): i for i, p in enumerate(shared)}
        for p in shared:
            p.grad = None
        norms: list[dict[int, torch.Tensor]] = []  # per task so far: parameter index -> ||gradient||

        def fold(p):  # runs inside task t's backward pass, t = len(norms) - 1
            t, i = len(norms) - 1, index[id(p)]
            g = p.grad.reshape(-1)
            rows[t][i].lerp_(g, 1.0 - beta_k)  # beta_k * buf + (1 - beta_k) * g
            norms[t][i] = torch.linalg.vector_norm(g)
            p.grad = None

        handles = [p.register_post_accumulate_grad_hook(fold) for p in shared]
        try:
            for t in range(T):
                norms.append({})
                torch.autograd.backward(losses[t], inputs=[*shared, *task], retain_graph=t < T - 1)
                self.engine.backward_passes += 1
                for i, row in enumerate(rows[t]):
                    if i not in norms[t]:  # a parameter this loss does not reach: its gradient is 0
                        row.mul_(beta_k)
        finally:
            for h in handles:
                h.remove()
            for p, g in zip(shared, held):
                p.grad = g
        grad_norms = [torch.linalg.vector_norm(torch.stack(list(n.values()))) if n else buf.new_zeros(())
                      for n in norms]
        coeff, u, a_k = self._coefficients(buf)
        c = coeff.to(buf.dtype)
        offset = 0
        for p, n in zip(shared, sizes):  # .grad += sum_t c_t buf_t, one matrix-vector product per tensor
            block = buf[:, offset: offset + n]
            offset += n
            if p.grad is None:
                p.grad = (c @ block).view_as(p).to(p.dtype)
            elif p.grad.is_contiguous() and p.grad.dtype == buf.dtype:
                p.grad.view(-1).addmv_(block.T, c)
            else:
                p.grad.add_((c @ block).view_as(p))
        return {"grad_norms": torch.stack(grad_norms).detach(),
                "buffer_coeffs": coeff, "buffer_norms": u, "alpha_k": a_k}

    def _coefficients(self, buf: torch.Tensor):
        u = buf.norm(dim=1)
        a_k = alpha_scale(u, self.alpha)
        return a_k / (u + NORM_EPS), u, a_k

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        buf = self._update_buffer(G)
        coeff, u, a_k = self._coefficients(buf)
        direction = coeff.to(buf.dtype) @ buf
        return Aggregate(direction=direction, info={"buffer_coeffs": coeff, "buffer_norms": u, "alpha_k": a_k})


@register
class DBMTLRep(DBMTL):
    name = "db_mtl_rep"
    supports_rep_grad = True

    def __init__(self, num_tasks: int, *, rep_grad: bool = True, **kw):
        super().__init__(num_tasks, rep_grad=rep_grad, **kw)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        buf = self._update_buffer(G)
        w, u, a_k = self._coefficients(buf)
        return Aggregate(weights=w, info={"buffer_norms": u, "alpha_k": a_k})
