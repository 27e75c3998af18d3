"""`office31` / `officehome`: multi-input classification, one task per domain (DB-MTL Table 4).

Each domain has its own training loader (batch 64, shuffled, last partial batch dropped as in
LibMTL `examples/office/create_dataset.py`). One epoch has as many steps as the longest domain
loader; shorter loaders restart (cycle) when exhausted. Unlike LibMTL, whose domain iterators run
on across epoch boundaries, every epoch restarts all loaders from a generator seeded by
(seed, epoch, domain index), so the batches of an epoch depend only on (seed, epoch) and a resumed
run sees the same batches. A training batch is {task: (images, labels)}.
Metric: accuracy (%) per domain, pooled over the split.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mtl.datasets.office import load_office, spec, task_name
from mtl.models.office_net import OfficeNet
from mtl.benchmarks.base import Benchmark, MetricSpec, TaskSpec, epoch_seed, stack_task_losses, task_indices
from mtl.errors import InvalidCombination


def domain_seed(seed: int, epoch: int, domain: int) -> int:
    """Generator seed of one domain loader in one epoch (distinct for every (seed, epoch, domain))."""
    return (epoch_seed(seed, epoch) * 1_009 + domain) % (2 ** 63)


def tasks(dataset: str = "office31", **_) -> list[TaskSpec]:
    """One classification task per domain, metric test accuracy (%)."""
    return [TaskSpec(task_name(d), (MetricSpec("acc", True, "%"),)) for d in spec(dataset).domains]


class Office(Benchmark):
    def __init__(self, dataset: str = "office31", root: str = "data/office31", image_size: int = 224,
                 batch_size: int = 64, eval_batch_size: int | None = None, num_workers: int = 0,
                 pretrained: bool = True, hidden_dim: int = 512, dropout: float = 0.5,
                 splits_dir: str | None = None):
        s = spec(dataset)
        self.name = s.name
        self.dataset = dataset
        data = load_office(dataset, root, image_size=image_size, splits_dir=splits_dir)
        self.tasks = tasks(dataset)
        self.model = OfficeNet(self.task_names, s.num_classes, pretrained=pretrained,
                               hidden_dim=hidden_dim, dropout=dropout)
        eval_bs = eval_batch_size or batch_size
        self.loaders = {"train": {}, "val": {}, "test": {}}
        for t in self.task_names:
            train = DataLoader(data["train"][t], batch_size=batch_size, shuffle=True, drop_last=True,
                               num_workers=num_workers, generator=torch.Generator())
            if len(train) == 0:
                raise ValueError(f"{dataset}: domain {t!r} has {len(data['train'][t])} training images, "
                                 f"fewer than one batch of {batch_size} (the last partial batch is dropped)")
            self.loaders["train"][t] = train
            for split in ("val", "test"):
                self.loaders[split][t] = DataLoader(data[split][t], batch_size=eval_bs, shuffle=False,
                                                    num_workers=num_workers)

    # -- training --------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return max(len(loader) for loader in self.loaders["train"].values())

    def train_batches(self, epoch: int, seed: int) -> Iterator[dict]:
        loaders = self.loaders["train"]
        for d, loader in enumerate(loaders.values()):
            loader.generator.manual_seed(domain_seed(seed, epoch, d))
        return self._cycle(loaders, self.steps_per_epoch())

    @staticmethod
    def _cycle(loaders: dict[str, DataLoader], steps: int) -> Iterator[dict]:
        iters = {t: iter(loader) for t, loader in loaders.items()}
        for _ in range(steps):
            batch = {}
            for t, loader in loaders.items():
                try:
                    batch[t] = next(iters[t])
                except StopIteration:  # shorter domain: start its next pass (generator continues)
                    iters[t] = iter(loader)
                    batch[t] = next(iters[t])
            yield batch

    def compute_losses(self, model, batch, rep_grad=False, tasks=None):
        if rep_grad:
            raise InvalidCombination(f"{self.name}: rep_grad=True is not supported with multi-input data "
                                     f"(one input batch per domain); use rep_grad=false")
        idx = task_indices(tasks, len(self.tasks))
        names = [self.task_names[i] for i in idx]
        out, _ = model({t: batch[t][0] for t in names})  # only the domains given run
        return stack_task_losses({i: F.cross_entropy(out[t], batch[t][1]) for i, t in zip(idx, names)},
                                 len(self.tasks)), None

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, split, device):
        """Accuracy (%) per domain: correct / images over the whole split, in eval mode."""
        was_training = model.training
        model.eval()
        try:
            correct = {}
            for t, loader in self.loaders[split].items():
                hits, total = torch.zeros((), dtype=torch.int64, device=device), 0  # counted on the device
                for x, y in loader:
                    out, _ = model({t: x.to(device)})
                    hits += (out[t].argmax(dim=1) == y.to(device)).sum()
                    total += y.numel()
                correct[t] = (hits, total)
            return {t: {"acc": 100.0 * int(hits) / total} for t, (hits, total) in correct.items()}
        finally:
            model.train(was_training)


def build(**cfg) -> Office:
    return Office(**cfg)
