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
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - s
    idx = torch.arange(1, v.numel() + 1, device=v.device, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / idx > 0)[-1])  # last index where the condition holds
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp(min=0)
