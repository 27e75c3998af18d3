"""ExcessMTL (He et al., ICML 2024): robust weighting by estimated excess risks.

As LibMTL ExcessMTL.py: accumulate squared task gradients (AdaGrad style, H_t = sqrt(sum g_t^2 +
1e-7)); the excess-risk proxy is r_t = g_t^T diag(1/H_t) g_t. The first step's r is stored as the
normaliser and the weights stay 1; afterwards w <- w * exp(step * r / r_first), renormalised to
sum T. A task with a zero gradient at the first step (r = 0, the reference then divides by 0 and
every weight becomes NaN) takes its normaliser from its first non-zero risk instead. Update
sum_t w_t g_t; heads get sum_t w_t grad L_t (the reference ends with a backward of sum w_t L_t). Memory: the accumulator is [T, D] like the reference's.
"""
from __future__ import annotations

import torch

from mtl.errors import SolverError
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Real
from mtl.methods.registry import register

ADAGRAD_EPS = 1e-7  # LibMTL ExcessMTL.py


@register
class ExcessMTL(GradientMethod):
    name = "excess_mtl"
    hparams = {"robust_step_size": Real(ge=0)}
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
            # a task whose gradient was zero at the first step has no normaliser yet (the reference
            # divides by 0 and the weights become NaN): it gets one at its first non-zero risk, and
            # its exponent is 0 until then
            known = self.initial_risk > 0
            ratio = torch.where(known, risk / torch.where(known, self.initial_risk, torch.ones_like(risk)),
                                torch.zeros_like(risk))
            self.initial_risk = torch.where(known, self.initial_risk, risk)
            w = self.loss_weight * torch.exp(ratio * self.robust_step_size)
            self.loss_weight = w / w.sum() * G.shape[0]
        if not torch.isfinite(self.loss_weight).all():
            raise SolverError(
                f"excess_mtl: non-finite weights {self.loss_weight.tolist()} (risks {risk.tolist()}, first "
                f"risks {self.initial_risk.tolist()}); lower method.robust_step_size (now {self.robust_step_size})")
        return Aggregate(weights=self.loss_weight.clone(), info={"excess_risk": risk})
