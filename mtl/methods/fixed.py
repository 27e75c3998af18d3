"""Fixed weights: objective = sum_t w_t L_t with constant, user-given weights (the weighted sum, or
linear scalarization, of the MTL surveys; Xin et al. 2022 call a sweep of these the scalarization
front). `weights: null` is EW (every w_t = 1). `make front` trains it over a grid of weights.
"""
from __future__ import annotations

import torch

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Either, ListOf, Null, Real
from mtl.methods.registry import register


@register
class Fixed(LossWeighting):
    name = "fixed"
    hparams = {"weights": Either(Null(), ListOf(Real(ge=0), length="num_tasks"))}

    def __init__(self, num_tasks: int, *, weights=None, **kw):
        super().__init__(num_tasks, **kw)
        w = [1.0] * num_tasks if weights is None else [float(v) for v in weights]
        if len(w) != num_tasks or any(not v >= 0 for v in w) or not any(v > 0 for v in w):
            raise ValueError(f"{self.name}: weights must be {num_tasks} numbers >= 0, not all 0; got {weights!r}")
        self.fixed_weights = torch.tensor(w)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return self.fixed_weights.to(losses.device, losses.dtype)
