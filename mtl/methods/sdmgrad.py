"""SDMGrad (Xiao et al., NeurIPS 2023): stochastic direction-oriented multi-objective descent.

As LibMTL SDMGrad.py, one step uses three mini-batches (rows of `losses` [3, T]: zeta, xi1, xi2):
GG = G_xi1 G_xi2^T, divided by (mean_t sqrt(max(GG_tt, 0)))^2 + 1e-8; starting from the previous
w (initially 1/T), `niter` steps of SGD (lr 5, momentum 0.5, momentum buffer fresh each step) on
w with gradient GG w + lamda * mean_row(GG), each followed by Euclidean projection onto the
simplex; then the shared update is (G_zeta^T w + lamda * mean_t g_zeta_t) / (1 + lamda).
Heads get the plain gradients of all 3T losses summed (not divided by 3, as the reference).
`weights` in the diagnostics is the effective per-task weight (w + lamda/T) / (1 + lamda).
"""
from __future__ import annotations

import torch

from mtl.engine import accumulate_grads, assign_flat_grad
from mtl.methods._multibatch import row_jacobians
from mtl.methods._simplex import project_simplex
from mtl.methods.base import Method
from mtl.methods._hparams import Int, Real
from mtl.methods.registry import register


@register
class SDMGrad(Method):
    name = "sdmgrad"
    hparams = {"lamda": Real(ge=0), "niter": Int(ge=1), "lr": Real(gt=0), "momentum": Real(ge=0, lt=1)}
    batches_per_step = 3
    _state_attrs = ("w",)

    def __init__(self, num_tasks: int, *, lamda: float = 0.3, niter: int = 20, lr: float = 5.0,
                 momentum: float = 0.5, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.lamda, self.niter, self.lr, self.momentum = lamda, niter, lr, momentum
        self.w = torch.full((num_tasks,), 1.0 / num_tasks)

    def update_weights(self, G1: torch.Tensor, G2: torch.Tensor) -> torch.Tensor:
        """The inner SGD on w from the two xi batches' gradients; returns (and keeps) the new w."""
        GG = G1 @ G2.T
        scale = torch.sqrt(torch.diag(GG).clamp(min=0)).mean()
        GG = GG / (scale ** 2 + 1e-8)
        Gg = GG.mean(dim=1)
        w = self.w.to(GG)
        buf = None
        for _ in range(self.niter):
            grad = GG @ w + self.lamda * Gg
            buf = grad.clone() if buf is None else self.momentum * buf + grad  # torch SGD, dampening 0
            w = project_simplex(w - self.lr * buf)
        self.w = w
        return w

    def direction(self, G_zeta: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w @ G_zeta + self.lamda * G_zeta.mean(0)) / (1 + self.lamda)

    def _backward(self, losses, shared_params, task_params, rep):
        zeta, xi1, xi2 = row_jacobians(self.engine, losses, shared_params, task_params)
        w = self.update_weights(xi1.shared.detach(), xi2.shared.detach())
        assign_flat_grad(shared_params, self.direction(zeta.shared, w))
        for rows in (zeta, xi1, xi2):
            accumulate_grads(task_params, rows.task_param_grads())
        T = self.num_tasks
        return {"weights": ((w + self.lamda / T) / (1 + self.lamda)).detach(), "sdmgrad_w": w.detach(),
                "grad_norms": zeta.shared.norm(dim=1).detach()}
