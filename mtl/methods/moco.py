"""MoCo (Fernando et al., ICLR 2023) as LibMTL `weighting/MoCo.py` implements it.

Per step k (from 1): each task gradient is normalised and scaled by its loss, ĝ_t = g_t/(‖g_t‖+1e-8)·L_t;
the tracking variable y ← y − β/k^{σ_β} (y − Ĝ) (starts at 0); the weights
λ ← softmax(λ − γ/k^{σ_γ} (y yᵀ + ρI) λ) (start 1/T); the shared update is yᵀλ. Heads get the
plain gradient of their own loss. Not available with rep-grad (LibMTL raises).
"""
from __future__ import annotations

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Real
from mtl.methods.registry import register


def moco_step(y: torch.Tensor, lambd: torch.Tensor, G: torch.Tensor, losses: torch.Tensor, step: int,
              beta: float, beta_sigma: float, gamma: float, gamma_sigma: float, rho: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One MoCo update; returns (new y [T, D], new λ [T], direction [D])."""
    T = G.shape[0]
    g_hat = G / (G.norm(dim=1, keepdim=True) + 1e-8) * losses.to(G.dtype).unsqueeze(1)
    y = y - (beta / step ** beta_sigma) * (y - g_hat)
    reg = y @ y.T + rho * torch.eye(T, dtype=G.dtype, device=G.device)
    lambd = torch.softmax(lambd - (gamma / step ** gamma_sigma) * (reg @ lambd), dim=-1)
    return y, lambd, y.T @ lambd


@register
class MoCo(GradientMethod):
    name = "moco"
    hparams = {"beta": Real(gt=0, le=1), "beta_sigma": Real(ge=0), "gamma": Real(gt=0), "gamma_sigma": Real(ge=0),
               "rho": Real(ge=0)}
    _state_attrs = ("y", "lambd", "moco_step")

    def __init__(self, num_tasks: int, *, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = beta, beta_sigma, gamma, gamma_sigma, rho
        self.y: torch.Tensor | None = None
        self.lambd = torch.ones(num_tasks) / num_tasks
        self.moco_step = 0

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        self.moco_step += 1
        if self.y is None:
            self.y = torch.zeros_like(G)
        self.y, self.lambd, direction = moco_step(
            self.y.to(G.device), self.lambd.to(G.device, G.dtype), G, losses, self.moco_step,
            self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho)
        return Aggregate(direction=direction, info={"weights": self.lambd.clone()})
