"""IMTL-G (Liu et al., ICLR 2021): closed-form weights whose combined gradient has equal
projections on every task's unit gradient.

With g_t the task gradients and u_t = g_t/‖g_t‖: D = g_1 − g_{2..T}, U = u_1 − u_{2..T} ([T−1, D]),
α_{2..T} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2..T}; update Σ α_t g_t (LibMTL `weighting/IMTL.py`,
gradient part). Solved with `torch.linalg.solve` in float64; when D Uᵀ is singular (two
parallel task gradients, or T > D) the pseudo-inverse is used and the step is counted in the
diagnostics as `solver_failures` (LibMTL's `torch.inverse` raises there; nash-mtl adds 1e-8 I).
Heads (`head_grads`): "plain" gives each head the plain gradient of its own loss (LibMTL
mode='backward', protocol A); "weighted" gives α_t ∇L_t, as nash-mtl/IGB4MTL, which backpropagate
Σ α_t L_t (protocol B).
"""
from __future__ import annotations

import torch

from mtl.methods._hparams import Choice
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods.registry import register


def imtl_g_weights(G: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Weights α [T] (sum 1) and whether D Uᵀ was singular (pseudo-inverse used)."""
    T = G.shape[0]
    if T == 1:
        return torch.ones(1, dtype=G.dtype, device=G.device), False
    G64 = G.double()
    U_all = G64 / G64.norm(dim=1, keepdim=True).clamp_min(1e-12)
    D = G64[:1] - G64[1:]
    U = U_all[:1] - U_all[1:]
    A = D @ U.T
    b = G64[0] @ U.T
    singular = False
    try:
        rest = torch.linalg.solve(A.T, b)
        if not torch.isfinite(rest).all():
            raise torch.linalg.LinAlgError("non-finite solution")
    except torch.linalg.LinAlgError:
        singular = True
        rest = b @ torch.linalg.pinv(A)
    alpha = torch.cat([(1 - rest.sum()).unsqueeze(0), rest])
    return alpha.to(G.dtype), singular


HEAD_GRADS = ("plain", "weighted")


@register
class IMTLG(GradientMethod):
    name = "imtl_g"
    hparams = {"head_grads": Choice(*HEAD_GRADS)}
    supports_rep_grad = True

    def __init__(self, num_tasks: int, *, head_grads: str = "plain", **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.head_grads = head_grads  # read by GradientMethod._assign_heads (weights: α)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        alpha, singular = imtl_g_weights(G)
        return Aggregate(weights=alpha, info={"solver_failures": int(singular)})
