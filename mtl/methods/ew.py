"""EW: equal weighting, objective = sum_t L_t (LibMTL EW.py uses weight 1, not 1/T)."""
import torch

from mtl.methods.base import LossWeighting
from mtl.methods.registry import register


@register
class EW(LossWeighting):
    name = "ew"

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)
