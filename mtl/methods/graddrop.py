"""GradDrop (Chen et al., NeurIPS 2020) as LibMTL `weighting/GradDrop.py` implements it.

Works on the gradients of the shared representation only (LibMTL raises for rep_grad=False, so
does this class). With per-task representation gradients ∇_t [T, B, ...] and the representation
value x [B, ...]:
  s_t   = sum over the batch of ∇_t * sign(x)                 ("grad × input" sign, [T, ...])
  P     = 0.5 (1 + sum_t s_t / (sum_t |s_t| + 1e-7))          (sign purity per feature)
  M_t   = (P > U)·[s_t > 0] + (P < U)·[s_t < 0], U ~ Unif(0,1) per feature (torch global RNG)
  grad  = sum_t ∇_t * (leak + (1 − leak) M_t)                 (mask shared over the batch)
which is pushed through the encoder with one `rep.value.backward(grad)`. Heads get the plain
gradient of their own loss. (nash-mtl/FAMO's GradDrop works on parameter gradients instead.)
"""
from __future__ import annotations

import torch

from mtl.errors import InvalidCombination
from mtl.methods.base import Method
from mtl.engine import accumulate_grads
from mtl.methods._hparams import Real
from mtl.methods.registry import register


def graddrop_combine(per_grads: torch.Tensor, inputs: torch.Tensor, leak: float = 0.0,
                     u: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """per_grads [T, B, ...], inputs [B, ...] -> (combined gradient [B, ...], mask M [T, ...])."""
    s = (per_grads * inputs.sign().unsqueeze(0)).sum(1)
    P = 0.5 * (1 + s.sum(0) / (s.abs().sum(0) + 1e-7))
    if u is None:
        u = torch.rand_like(P)
    M = ((P > u).unsqueeze(0) & (s > 0)) | ((P < u).unsqueeze(0) & (s < 0))
    M = M.to(per_grads.dtype)
    combined = (per_grads * (leak + (1 - leak) * M.unsqueeze(1))).sum(0)
    return combined, M


@register
class GradDrop(Method):
    name = "graddrop"
    hparams = {"leak": Real(ge=0, le=1)}
    supports_rep_grad = True

    def __init__(self, num_tasks: int, *, leak: float = 0.0, rep_grad: bool = True, **kwargs):
        if not rep_grad:
            raise InvalidCombination(
                "graddrop works on representation gradients only (LibMTL raises for rep_grad=False); "
                "run it with rep_grad=true on a model with a single shared representation")
        super().__init__(num_tasks, rep_grad=rep_grad, **kwargs)
        self.leak = leak

    def _backward(self, losses, shared_params, task_params, rep):
        T = self.num_tasks
        grads = self.engine.jacobian(losses, [rep.leaf], task_params)
        per = grads.shared.view(T, *rep.leaf.shape)
        combined, M = graddrop_combine(per, rep.value.detach(), self.leak)
        rep.value.backward(combined.to(rep.value.dtype))
        accumulate_grads(task_params, grads.task_param_grads())
        return {"grad_norms": per.reshape(T, -1).norm(dim=1).detach(), "kept_fraction": M.mean(
            dim=tuple(range(1, M.dim()))) if M.dim() > 1 else M}
