"""IMTL (Liu et al., ICLR 2021) = IMTL-L loss scaling + IMTL-G gradient weights, as LibMTL
`weighting/IMTL.py` implements it.

IMTL-L: each (transformed) loss becomes e^{s_t} L_t − s_t with a learnable s (init 0), updated by
the trainer's optimizer (`trainable_parameters`). IMTL-G then weights the gradients of the scaled
losses (see `imtl_g`). s receives the gradient of its own scaled loss, e^{s_t} L_t − 1, and heads
the plain gradient of their own scaled loss (LibMTL mode='backward').
"""
from __future__ import annotations

import torch
from torch import nn

from mtl.methods.imtl_g import IMTLG
from mtl.methods.registry import register


def imtl_l_scale(losses: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """IMTL-L: e^s L − s per task (minimising over s balances the scaled losses to 1)."""
    return torch.exp(s) * losses - s


@register
class IMTL(IMTLG):
    name = "imtl"
    supports_rep_grad = True

    def __init__(self, num_tasks: int, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.loss_scale = nn.Parameter(torch.zeros(num_tasks))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.loss_scale]

    def _backward(self, losses, shared_params, task_params, rep):
        scaled = imtl_l_scale(losses, self.loss_scale)
        info = super()._backward(scaled, shared_params, list(task_params) + [self.loss_scale], rep)
        info["loss_scale"] = self.loss_scale.detach().clone()
        return info
