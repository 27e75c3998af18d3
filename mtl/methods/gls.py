"""GLS (geometric loss strategy): minimise the geometric mean (prod_t L_t)^(1/T).

Written as per-task terms w_t L_t with detached w_t = G / (T L_t), G the geometric mean: their sum
equals G and their gradient equals grad G, so GLS also composes with gradient methods (`combo`).
Source: LibMTL weighting/GLS.py (it reports L_t / (T prod L), we report the gradient weights).
"""
import torch

from mtl.methods.base import LossWeighting
from mtl.methods.registry import register


@register
class GLS(LossWeighting):
    name = "gls"
    logs_losses = True

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        T = losses.shape[0]
        geo = losses.prod().pow(1.0 / T)
        return geo / (T * losses)
