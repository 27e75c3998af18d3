"""STCH (smooth Tchebycheff scalarisation), as LibMTL weighting/STCH.py runs it.

Epochs < warmup_epoch: sum_t log(L_t + 1e-20). During epoch == warmup_epoch the same objective,
and the mean losses of that epoch become the nadir vector. Afterwards
T * mu * logsumexp(log(L_t / nadir_t + 1e-20) / mu), written as per-task terms w_t * l_t with
w = T * softmax(l / mu) detached (same gradient; the value differs from LibMTL's only by the
detached max it subtracts for stability).
"""
import torch

from mtl.errors import MissingEpochStatistics
from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Int, Real
from mtl.methods.registry import register

STCH_EPS = 1e-20  # LibMTL STCH.py


@register
class STCH(LossWeighting):
    name = "stch"
    logs_losses = True
    hparams = {"mu": Real(gt=0), "warmup_epoch": Int(ge=0)}
    _state_attrs = ("nadir_sum", "nadir_count", "nadir")

    def __init__(self, num_tasks: int, *, mu: float = 1.0, warmup_epoch: int = 4, **kw):
        super().__init__(num_tasks, **kw)
        self.mu = float(mu)
        self.warmup_epoch = int(warmup_epoch)
        self.nadir_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.nadir_count = 0
        self.nadir: torch.Tensor | None = None

    def task_terms(self, losses: torch.Tensor):
        if self.epoch <= self.warmup_epoch:
            if self.epoch == self.warmup_epoch:
                self.nadir_sum += losses.detach().double().cpu()
                self.nadir_count += 1
            return torch.log(losses + STCH_EPS), torch.ones_like(losses).detach()
        if self.nadir is None:
            if self.nadir_count == 0:
                raise MissingEpochStatistics(
                    f"stch: no training step seen during warm-up epoch {self.warmup_epoch}, so there is no nadir "
                    f"vector; run at least one step per epoch (trainer.max_steps_per_epoch >= 1)")
            self.nadir = (self.nadir_sum / self.nadir_count).float()
        rel = torch.log(losses / self.nadir.to(losses.device, losses.dtype) + STCH_EPS)
        w = self.num_tasks * torch.softmax(rel.detach() / self.mu, dim=-1)
        return w * rel, w
