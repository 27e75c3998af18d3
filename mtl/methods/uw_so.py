"""UW-SO, soft optimal uncertainty weighting (Kirchdorfer et al., "Analytical Uncertainty-Based Loss
Weighting in Multi-Task Learning", arXiv 2408.07985, 2024). No public code: from the paper's
equations. UW's optimal uncertainty for an L1-type loss is σ_t = L_t, which weights each task by
1/L_t (UW-O); UW-SO normalises these inverse losses with a softmax of temperature T:

    w_t = exp((1/L_t) / T) / Σ_j exp((1/L_j) / T),   objective Σ_t w_t L_t,

with the weights computed from the detached losses of the current batch (no learnable
parameters). The paper tunes T per benchmark; `temperature: 1.0` in the config is a neutral
starting value, not a published default.
"""
import torch

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Real
from mtl.methods.registry import register


@register
class UWSO(LossWeighting):
    name = "uw_so"
    hparams = {"temperature": Real(gt=0)}

    def __init__(self, num_tasks: int, *, temperature: float = 1.0, **kw):
        super().__init__(num_tasks, **kw)
        self.temperature = float(temperature)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.softmax((1.0 / losses) / self.temperature, dim=-1)
