"""UW (uncertainty weighting): sum_t L_t / (2 e^{s_t}) + s_t / 2 with learnable s_t.

LibMTL weighting/UW.py initialises s_t = -0.5 and lets the main optimizer update s (same lr and
weight decay as the network): s is returned by `trainable_parameters()`. nash-mtl/IGB initialise at
0 and use an Adam group with lr 0.025 (`init`, and the trainer's method-parameter group).
"""
import torch
from torch import nn

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Real
from mtl.methods.registry import register


@register
class UW(LossWeighting):
    name = "uw"
    hparams = {"init": Real()}  # initial log-variance s_t

    def __init__(self, num_tasks: int, *, init: float = -0.5, **kw):
        super().__init__(num_tasks, **kw)
        self.log_var = nn.Parameter(torch.full((num_tasks,), float(init)))

    def task_terms(self, losses: torch.Tensor):
        s = self.log_var.to(losses.dtype)
        terms = losses / (2 * s.exp()) + s / 2
        return terms, (1 / (2 * s.exp())).detach()

    def trainable_parameters(self):
        return [self.log_var]
