"""IMTL-L: learnable loss scales, L'_t = e^{s_t} L_t - s_t (s_t init 0).

The loss part of LibMTL weighting/IMTL.py, on its own. s is updated by the main optimizer
(returned by `trainable_parameters()`), as LibMTL does for its loss_scale.
"""
import torch
from torch import nn

from mtl.methods.base import LossWeighting
from mtl.methods.registry import register


@register
class IMTLL(LossWeighting):
    name = "imtl_l"

    def __init__(self, num_tasks: int, **kw):
        super().__init__(num_tasks, **kw)
        self.loss_scale = nn.Parameter(torch.zeros(num_tasks))

    def task_terms(self, losses: torch.Tensor):
        s = self.loss_scale.to(losses.dtype)
        return s.exp() * losses - s, s.exp().detach()

    def trainable_parameters(self):
        return [self.loss_scale]
