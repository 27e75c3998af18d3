"""`toy`: the two-objective problem of the CAGrad (Liu et al. 2021) and Nash-MTL (Navon et al. 2022)
papers. The "model" is a point x in R^2 (the only shared parameter, no heads); the two task losses
are f1(x), f2(x) with very different curvature, so methods trace visibly different paths.

Objectives as defined in CAGrad's `toy.py` (restated, not copied):
  f1 = c1(x2) * (log max(|0.5(-x1-7) - tanh(-x2)|, 5e-6) + 6) + c2(x2) * (((-x1+7)^2 + 0.1(-x2-8)^2)/10 - 20)
  f2 = c1(x2) * (log max(|0.5(-x1+3) + tanh(-x2) + 2|, 5e-6) + 6) + c2(x2) * (((-x1-7)^2 + 0.1(-x2-8)^2)/10 - 20)
  c1 = max(tanh(x2/2), 0), c2 = max(tanh(-x2/2), 0). Nash-MTL multiplies f1 by `scale` (0.1 in its
  imbalanced variant). Both objectives are >= -20, so losses and the reported metric are f + 20
  (>= 0): gradients are unchanged, log-based methods stay defined and the relative Δ is well defined.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl.models.base import MultiTaskModel
from mtl.benchmarks.base import Benchmark, MetricSpec, TaskSpec

LOWER = 5e-6
OFFSET = 20.0
STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))  # CAGrad's initial points


def objectives(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """f1, f2 at points x [..., 2] -> [..., 2]."""
    x1, x2 = x[..., 0], x[..., 1]
    c1 = torch.clamp(torch.tanh(x2 * 0.5), min=0)
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), min=0)
    f1_log = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), min=LOWER).log() + 6
    f2_log = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), min=LOWER).log() + 6
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f1 = (f1_log * c1 + f1_sq * c2) * scale
    f2 = f2_log * c1 + f2_sq * c2
    return torch.stack([f1, f2], dim=-1)


def toy_losses(model: "ToyPoint") -> torch.Tensor:
    """Task losses f_t + 20 (>= 0): the same gradients as f_t, and log-based methods (DB-MTL, FAMO,
    IGB) stay defined where f_t < 0."""
    out, _ = model()
    return torch.stack([out["f1"], out["f2"]]) + OFFSET


class ToyPoint(MultiTaskModel):
    supports_rep_grad = False

    def __init__(self, start, scale: float = 1.0):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.scale = scale

    def forward(self, _batch=None, rep_grad: bool = False):
        f = objectives(self.x, self.scale)
        return {"f1": f[0], "f2": f[1]}, None

    def shared_parameters(self):
        return [self.x]

    def task_parameters(self):
        return []


class Toy(Benchmark):
    name = "toy"

    def __init__(self, start=STARTS[0], scale: float = 1.0, steps_per_epoch: int = 500):
        self.tasks = tasks()
        self.model = ToyPoint(list(start), scale)
        self._steps = steps_per_epoch
        self.loaders = {"train": None, "test": "point"}

    def train_batches(self, epoch, seed):
        return iter([None] * self._steps)

    def steps_per_epoch(self):
        return self._steps

    def compute_losses(self, model, batch, rep_grad=False, tasks=None):
        return toy_losses(model), None  # a point in R^2: both objectives cost nothing

    @torch.no_grad()
    def evaluate(self, model, split, device):
        out, _ = model(None)
        return {t: {"f_plus_20": float(out[t]) + OFFSET} for t in ("f1", "f2")}


def tasks(**_) -> list[TaskSpec]:
    """The two objectives, reported as f + 20 (positive, so Δp is defined)."""
    return [TaskSpec(t, (MetricSpec("f_plus_20", False),)) for t in ("f1", "f2")]


def build(**cfg) -> Toy:
    return Toy(**cfg)
