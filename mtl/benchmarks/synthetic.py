"""`synthetic`: multi-task regression whose tasks have very different loss scales.

Each task t regresses y_t = s_t * (w_t . tanh(A x)) + noise from shared inputs x, with output
scales s_t spanning orders of magnitude, so raw MSE losses differ by s_t^2: the imbalance DB-MTL
targets. The data is generated from `data_seed` (fixed across runs) and needs no download.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mtl.models.base import HPS
from mtl.benchmarks.base import Benchmark, MetricSpec, TaskSpec, stack_task_losses, task_indices


def make_data(n: int, dim: int, scales: list[float], noise: float, gen: torch.Generator, A, W):
    x = torch.randn(n, dim, generator=gen)
    clean = torch.tanh(x @ A) @ W  # [n, T]
    y = (clean + noise * torch.randn(clean.shape, generator=gen)) * torch.tensor(scales)
    return x, y


class Synthetic(Benchmark):
    name = "synthetic"

    def __init__(self, num_tasks=3, scales=(0.1, 1.0, 10.0), input_dim=16, latent_dim=8,
                 hidden=64, noise=0.1, n_train=2048, n_val=512, n_test=512, batch_size=64,
                 data_seed=1234):
        if len(scales) != num_tasks:
            raise ValueError(f"synthetic: {num_tasks} tasks need {num_tasks} scales, got {list(scales)}")
        gen = torch.Generator().manual_seed(data_seed)
        A = torch.randn(input_dim, latent_dim, generator=gen) / input_dim ** 0.5
        W = torch.randn(latent_dim, num_tasks, generator=gen)
        splits = {}
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            splits[split] = TensorDataset(*make_data(n, input_dim, list(scales), noise, gen, A, W))
        self.scales = torch.tensor(scales)
        self.tasks = tasks(num_tasks)
        encoder = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.model = HPS(encoder, {t.name: nn.Linear(hidden, 1) for t in self.tasks})
        self.loaders = {
            "train": DataLoader(splits["train"], batch_size=batch_size, shuffle=True, generator=torch.Generator()),
            "val": DataLoader(splits["val"], batch_size=256),
            "test": DataLoader(splits["test"], batch_size=256),
        }

    def compute_losses(self, model, batch, rep_grad=False, tasks=None):
        x, y = batch
        idx = task_indices(tasks, len(self.tasks))
        out, rep = model(x, rep_grad=rep_grad, tasks=[self.tasks[i].name for i in idx])
        values = {i: ((out[self.tasks[i].name].squeeze(-1) - y[:, i]) ** 2).mean() for i in idx}
        return stack_task_losses(values, len(self.tasks)), rep

    def sample_losses(self, model, batch, rep_grad=False):
        x, y = batch
        out, rep = model(x, rep_grad=rep_grad)
        pred = torch.stack([out[t.name].squeeze(-1) for t in self.tasks], dim=1)
        return (pred - y) ** 2, rep

    @torch.no_grad()
    def evaluate(self, model, split, device):
        abs_err = torch.zeros(len(self.tasks), dtype=torch.float64, device=device)  # summed on the device
        n = 0
        for x, y in self.loaders[split]:
            out, _ = model(x.to(device))
            pred = torch.stack([out[t.name].squeeze(-1) for t in self.tasks], dim=1)
            abs_err += (pred - y.to(device)).abs().sum(0).double()
            n += y.shape[0]
        mae = abs_err.cpu() / n  # the one transfer of the evaluation
        return {t.name: {"mae": float(mae[i])} for i, t in enumerate(self.tasks)}


def tasks(num_tasks: int = 3, **_) -> list[TaskSpec]:
    """Regression tasks t0..t{T-1}, reported as test MAE."""
    return [TaskSpec(f"t{t}", (MetricSpec("mae", False),)) for t in range(num_tasks)]


def build(**cfg) -> Synthetic:
    return Synthetic(**cfg)
