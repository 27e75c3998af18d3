"""ExcessMTL (He et al., ICML 2024): robust weighting by estimated excess risks.

As LibMTL ExcessMTL.py: accumulate squared task gradients (AdaGrad style, H_t = sqrt(sum g_t^2 +
1e-7)); the excess-risk proxy is r_t = g_t^T diag(1/H_t) g_t. The first step's r is stored as the
normaliser and the weights stay 1; afterwards w <- w * exp(step * r / r_first), renormalised to
sum T. Update sum_t w_t g_t; heads get sum_t w_t grad L_t (the reference ends with a backward of
sum w_t L_t). Memory: the accumulator is [T, D] like the reference's.
"""
from __future__ import annotations

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods.registry import register

ADAGRAD_EPS = 1e-7  # LibMTL ExcessMTL.py


@register
class ExcessMTL(GradientMethod):
    name = "excess_mtl"
    head_grads = "weighted"
    _state_attrs = ("loss_weight", "grad_sum", "initial_risk")

    def __init__(self, num_tasks: int, *, robust_step_size: float = 1e-2, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.robust_step_size = robust_step_size
        self.loss_weight: torch.Tensor | None = None
        self.grad_sum: torch.Tensor | None = None
        self.initial_risk: torch.Tensor | None = None

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        G = G.detach()
        if self.grad_sum is None:
            self.grad_sum = torch.zeros_like(G)
            self.loss_weight = torch.ones(G.shape[0], dtype=G.dtype, device=G.device)
        self.grad_sum += G ** 2
        risk = (G * G / torch.sqrt(self.grad_sum + ADAGRAD_EPS)).sum(1)
        if self.initial_risk is None:
            self.initial_risk = risk.clone()
        else:
            w = self.loss_weight * torch.exp(risk / self.initial_risk * self.robust_step_size)
            self.loss_weight = w / w.sum() * G.shape[0]
        if not torch.isfinite(self.loss_weight).all():
            raise FloatingPointError(
                f"excess_mtl: non-finite weights {self.loss_weight.tolist()} (first-step risks "
                f"{self.initial_risk.tolist()}; a task had a zero gradient at the first step?)"
            )
        return Aggregate(weights=self.loss_weight.clone(), info={"excess_risk": risk})
