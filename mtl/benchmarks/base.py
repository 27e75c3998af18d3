"""The benchmark contract: data, model, tasks. Protocol (optimizer, schedule, epochs, selection,
STL reference) lives in the benchmark's config; a benchmark knows nothing about methods."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from mtl.engine import Representation


@dataclass(frozen=True)
class MetricSpec:
    """One reported metric. `higher_is_better` fixes the sign in Δp/Δm; `unit` is the reported unit
    ("%", "meV", "deg", ...; "" for unit-free or scaled quantities), shown in table headers."""

    name: str
    higher_is_better: bool
    unit: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metrics: tuple[MetricSpec, ...]

    def metric(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.name!r} has no metric {name!r}; it reports {self.metric_names}")

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]


Metrics = dict[str, dict[str, float]]  # task -> metric -> value (reported units)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation draws: a function of (seed, epoch) alone, so a
    resumed run sees the batches an uninterrupted one saw."""
    return seed * 100_003 + epoch


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch (tensor, PyG batch, or nested dict/list/tuple of them) to `device`. Copies are
    non-blocking: from pinned memory (loaders pin when CUDA is present) the host queues the copy and
    goes on; kernels on the device's stream still wait for it."""
    if hasattr(batch, "to") and not isinstance(batch, (dict, list, tuple)):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def task_indices(tasks: Sequence[int] | None, num_tasks: int) -> list[int]:
    """The tasks whose losses a step computes: all, or the method's active tasks (STL: one)."""
    return list(range(num_tasks)) if tasks is None else sorted(int(t) for t in tasks)


def stack_task_losses(values: dict[int, torch.Tensor], num_tasks: int) -> torch.Tensor:
    """[T] losses from the computed ones; a task that was not computed (its head did not run in a
    single-task step) gets a constant 0 that no gradient flows through."""
    zero = next(iter(values.values())).detach().new_zeros(())
    return torch.stack([values[i] if i in values else zero for i in range(num_tasks)])


class Benchmark:
    """Base class; a benchmark module's `build(**cfg)` returns one.

    Subclasses set `name`, `tasks`, `model` and `loaders` ({"train", "test", optional "val"}) and
    implement `compute_losses` and `evaluate`.
    """

    name: str
    tasks: list[TaskSpec]
    model: "nn.Module"
    loaders: dict[str, Any]

    # -- training --------------------------------------------------------------------------
    def train_batches(self, epoch: int, seed: int) -> Iterator[Any]:
        """Batches of one training epoch; the shuffle order depends only on (seed, epoch), so a
        resumed run sees the same batches as an uninterrupted one."""
        loader = self.loaders["train"]
        gen = getattr(loader, "generator", None)
        if gen is not None:
            gen.manual_seed(epoch_seed(seed, epoch))
        return iter(loader)

    def steps_per_epoch(self) -> int:
        return len(self.loaders["train"])

    def batch_size(self, batch: Any) -> int | list[int]:
        """Samples behind one training batch's losses: one number, or one per task when the batch
        is a dict keyed by task names (one input batch per task). It weighs the step in the epoch's
        mean train loss, as LibMTL `AbsLoss._average_loss` does (`pred.size()[0]` per step).
        The default reads the leading size of the batch's first tensor (a graph batch's
        `num_graphs`); a batch without tensors counts 1."""
        if isinstance(batch, dict) and set(batch) == set(self.task_names):
            return [_leading_size(batch[t]) for t in self.task_names]
        return _leading_size(batch)

    def compute_losses(self, model: nn.Module, batch: Any, rep_grad: bool = False,
                       tasks: Sequence[int] | None = None) -> tuple[torch.Tensor, Representation | None]:
        """Per-task training losses [T] of one batch (and the split representation in rep-grad mode).
        `tasks` (the method's `active_tasks()`, e.g. STL's one task): run only those heads and
        losses; the others are constant zeros (`stack_task_losses`)."""
        raise NotImplementedError

    def sample_losses(self, model: nn.Module, batch: Any, rep_grad: bool = False
                      ) -> tuple[torch.Tensor, Representation | None]:
        """Per-sample training losses [B, T] of one batch, attached to the graph (their mean over the
        batch is `compute_losses`'); optional: only methods that need "sample_losses" (NTKMTL-SR)
        call it, and the trainer refuses those methods on a benchmark without it."""
        raise NotImplementedError(f"benchmark {self.name} defines no per-sample losses")

    def has_sample_losses(self) -> bool:
        return type(self).sample_losses is not Benchmark.sample_losses

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> Metrics:
        """Metrics of `split` in reported units, pooled over the whole split."""
        raise NotImplementedError

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def splits(self) -> list[str]:
        return [s for s in ("val", "test") if self.loaders.get(s) is not None]


def _leading_size(batch: Any) -> int:
    """Number of samples in `batch`: `num_graphs` of a graph batch, else dim 0 of its first tensor."""
    if hasattr(batch, "num_graphs"):
        return int(batch.num_graphs)
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)) and batch:
        return _leading_size(batch[0])
    return 1
