"""Euclidean projection onto the probability simplex (SDMGrad's and MoDo's weight updates).

Sort-based algorithm of Duchi et al. (ICML 2008): the same projection that SDMGrad's
`euclidean_proj_simplex` (numpy) and MoDo's `_projection2simplex` (torch) compute, written once
in torch so both methods share it (and no `np.alltrue`, removed in numpy 2).
"""
from __future__ import annotations

import torch


def project_simplex(v: torch.Tensor, s: float = 1.0) -> torch.Tensor:
    """argmin_w ||w - v||_2 subject to w >= 0, sum(w) = s (v is 1-D)."""
    if s <= 0:
        raise ValueError(f"simplex radius must be positive, got {s}")
    if v.dim() != 1:
        raise ValueError(f"project_simplex expects a 1-D tensor, got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError(f"project_simplex: non-finite input {v.tolist()}")
    x = v.double()  # float32 cancellation in u - (cumsum - s) can lose the always-true first index
    u, _ = torch.sort(x, descending=True)
    css = torch.cumsum(u, 0) - s
    idx = torch.arange(1, x.numel() + 1, device=x.device, dtype=x.dtype)
    hits = torch.nonzero(u - css / idx > 0)
    rho = int(hits[-1]) if hits.numel() else 0  # index 0 always qualifies in exact arithmetic
    theta = css[rho] / (rho + 1)
    return (x - theta).clamp(min=0).to(v.dtype)
