"""MoDo (Chen et al., NeurIPS 2023): multi-objective gradient with double sampling.

As LibMTL MoDo.py, one step uses three mini-batches (rows of `losses` [3, T]) with task
gradients G1, G2, G3: lambda <- Proj_simplex(lambda - gamma (G1 (G2^T lambda) + rho lambda))
(lambda initially 1/T), shared update G3^T lambda; heads get the plain gradients of all 3T losses
divided by 3 (the reference averages decoder grads over the three batches).
"""
from __future__ import annotations

import torch

from mtl.engine import accumulate_grads, assign_flat_grad
from mtl.methods._multibatch import row_jacobians
from mtl.methods._simplex import project_simplex
from mtl.methods.base import Method
from mtl.methods._hparams import Real
from mtl.methods.registry import register


@register
class MoDo(Method):
    name = "modo"
    hparams = {"gamma": Real(gt=0), "rho": Real(ge=0)}
    batches_per_step = 3
    _state_attrs = ("lambd",)

    def __init__(self, num_tasks: int, *, gamma: float = 1e-3, rho: float = 0.1, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.gamma, self.rho = gamma, rho
        self.lambd = torch.full((num_tasks,), 1.0 / num_tasks)

    def update_weights(self, G1: torch.Tensor, G2: torch.Tensor) -> torch.Tensor:
        lam = self.lambd.to(G1)
        self.lambd = project_simplex(lam - self.gamma * (G1 @ (G2.T @ lam) + self.rho * lam))
        return self.lambd

    def _backward(self, losses, shared_params, task_params, rep):
        rows = row_jacobians(self.engine, losses, shared_params, task_params)
        lam = self.update_weights(rows[0].shared.detach(), rows[1].shared.detach())
        assign_flat_grad(shared_params, lam @ rows[2].shared)
        for r in rows:
            accumulate_grads(task_params, [None if g is None else g / 3 for g in r.task_param_grads()])
        return {"weights": lam.detach(), "grad_norms": rows[2].shared.norm(dim=1).detach()}
