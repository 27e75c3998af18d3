"""Gradient engine: per-task gradients of the shared parameters (the T x D Jacobian).

Two ways to get the same numbers:
- ``loop``: one backward pass per task (LibMTL's ``mode='backward'``), robust everywhere;
- ``batched``: one vectorised vector-Jacobian product (``is_grads_batched=True``).
``auto`` times both on the first call and keeps the faster one (results are identical), because
which wins depends on the model and device (on 2 CPU cores the loop was 2.7x faster on the QM9
MPNN and equal on ResNet-18). The engine counts the backward passes it made.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch

from mtl.errors import InvalidCombination


@dataclass
class Representation:
    """The shared representation in rep-grad mode.

    value: encoder output, still attached to the encoder's graph.
    leaf: `value.detach().requires_grad_()`, the tensor the task heads consumed.
    """

    value: torch.Tensor
    leaf: torch.Tensor

    @staticmethod
    def split(value: torch.Tensor) -> "Representation":
        """Under bf16/fp16 autocast the encoder's output is cast to fp32 here: the heads get an fp32
        leaf, so the per-task representation gradients the method combines are fp32 (and fp16 loss
        scaling unscales them without underflow, see `mtl.run.precision.LossScaling`)."""
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        return Representation(value, value.detach().requires_grad_())

MODES = ("loop", "batched", "auto")


class NonFiniteGradients(Exception):
    """A per-task gradient is inf/NaN under fp16 loss scaling: the step is skipped before the method
    uses the gradients (control flow between the engine and `mtl.run.precision.LossScaling`)."""


@dataclass
class TaskGradients:
    """Per-task gradients of one step.

    shared: [T, D] gradients of the flattened shared parameters (or representation).
    task: per task, per task-specific parameter, the gradient of that task's loss (None where the
        parameter does not depend on the task, e.g. another task's head).
    """

    shared: torch.Tensor
    task: list[list[torch.Tensor | None]]

    def task_param_grads(self, weights: torch.Tensor | None = None) -> list[torch.Tensor | None]:
        """Sum over tasks of the task-parameter gradients, optionally weighted per task."""
        if not self.task:
            return []
        out: list[torch.Tensor | None] = [None] * len(self.task[0])
        for t, grads in enumerate(self.task):
            for i, g in enumerate(grads):
                if g is None:
                    continue
                g = g if weights is None else g * weights[t]
                out[i] = g if out[i] is None else out[i] + g
        return out


class GradientEngine:
    """Computes per-task gradients; `backward_passes` counts backward calls made.

    `check_finite` (set by fp16 loss scaling): every Jacobian is checked with one fused `isfinite`
    (one host sync) and `NonFiniteGradients` is raised before a method can use it."""

    def __init__(self, mode: str = "loop"):
        if mode not in MODES:
            raise ValueError(f"grad engine mode {mode!r} unknown; choose one of {MODES}")
        self.mode = mode
        self.chosen: str | None = None if mode == "auto" else mode
        self.backward_passes = 0
        self.check_finite = False

    def check(self, G: torch.Tensor, task: Sequence[Sequence[torch.Tensor | None]] = ()) -> None:
        """Raise `NonFiniteGradients` if `check_finite` is set and the shared gradients `G` or the
        task-parameter gradients hold an inf/NaN (a head's fp16 backward can overflow while the
        shared rows stay finite; GradScaler would then skip a step the method already counted)."""
        if not self.check_finite:
            return
        parts = [G, *(g for row in task for g in row if g is not None)]
        if not bool(torch.stack([torch.isfinite(g).all() for g in parts]).all()):  # one host sync
            raise NonFiniteGradients(f"non-finite per-task gradient ({tuple(G.shape)} Jacobian)")

    def jacobian(
        self,
        losses: torch.Tensor,
        shared: Sequence[torch.Tensor],
        task: Sequence[torch.Tensor] = (),
        retain_graph: bool = False,
    ) -> TaskGradients:
        """Per-task gradients of `losses` ([T]) w.r.t. `shared` (flattened) and `task` params."""
        if losses.dim() != 1:
            raise ValueError(f"losses must be a 1-D tensor of per-task losses, got shape {tuple(losses.shape)}")
        grads = self._jacobian(losses, shared, task, retain_graph)
        self.check(grads.shared, grads.task)
        return grads

    def _jacobian(self, losses, shared, task, retain_graph) -> TaskGradients:
        if self.chosen is None:
            return self._measure(losses, shared, task, retain_graph)
        if self.chosen == "loop":
            return self._loop(losses, shared, task, retain_graph)
        try:
            return self._batched(losses, shared, task, retain_graph)
        except RuntimeError as err:
            if "Batching rule not implemented" not in str(err):
                raise
            op = str(err).split("for ", 1)[-1].split(".")[0]
            raise InvalidCombination(
                f"grad_engine=batched: the model's backward uses {op}, which has no batched (vmap) rule on "
                f"{losses.device.type} (e.g. cuDNN's LSTM in the QM9 MPNN's Set2Set); use grad_engine=loop, "
                f"or auto (which falls back to the loop)") from None

    def _loop(self, losses, shared, task, retain_graph) -> TaskGradients:
        params = list(shared) + list(task)
        task_rows = []
        T = losses.shape[0]
        out = None
        for t in range(T):
            grads = torch.autograd.grad(
                losses[t], params, retain_graph=retain_graph or t < T - 1, allow_unused=True
            )
            self.backward_passes += 1
            if out is None:  # rows are written in place: one copy of the gradients, not cat + stack
                ref = next((g for g in grads[: len(shared)] if g is not None), losses)
                out = torch.empty(T, flat_dim(shared), device=ref.device, dtype=ref.dtype)
            _flatten_into(out[t], grads[: len(shared)], shared)
            task_rows.append(list(grads[len(shared):]))
        return TaskGradients(out, task_rows)

    def _batched(self, losses, shared, task, retain_graph) -> TaskGradients:
        params = list(shared) + list(task)
        T = losses.shape[0]
        eye = torch.eye(T, device=losses.device, dtype=losses.dtype)
        grads = torch.autograd.grad(
            losses, params, grad_outputs=eye, is_grads_batched=True,
            retain_graph=retain_graph, allow_unused=True,
        )
        self.backward_passes += 1
        shared_rows = torch.cat(
            [
                (g.reshape(T, -1) if g is not None else p.new_zeros(T, p.numel()))
                for g, p in zip(grads[: len(shared)], shared)
            ],
            dim=1,
        )
        # which task's loss reaches which task parameter (the loop reports None where it does not):
        # one [P, T] flag tensor read with a single host sync instead of one per parameter and task
        task_grads = grads[len(shared):]
        present = [i for i, g in enumerate(task_grads) if g is not None]
        flags = torch.stack([task_grads[i].reshape(T, -1).any(1) for i in present]).T.tolist() if present else []
        task_rows = []
        for t in range(T):
            row: list[torch.Tensor | None] = [None] * len(task_grads)
            for k, i in enumerate(present):
                if flags[t][k]:
                    row[i] = task_grads[i][t]
            task_rows.append(row)
        return TaskGradients(shared_rows, task_rows)

    def _measure(self, losses, shared, task, retain_graph) -> TaskGradients:
        """First call under `auto`: time both ways on the same graph, keep the faster."""
        sync = torch.cuda.synchronize if losses.is_cuda else (lambda: None)
        try:
            sync(); t0 = time.perf_counter()
            self._batched(losses, shared, task, retain_graph=True)
            sync(); t_batched = time.perf_counter() - t0
        except RuntimeError as err:  # some ops have no batching rule
            warnings.warn(f"grad engine auto: batched VJP failed ({err}); using the loop", stacklevel=3)
            self.chosen = "loop"
            return self._loop(losses, shared, task, retain_graph)
        sync(); t0 = time.perf_counter()
        result = self._loop(losses, shared, task, retain_graph)
        sync(); t_loop = time.perf_counter() - t0
        self.chosen = "loop" if t_loop <= t_batched else "batched"
        return result


def _flatten_into(row: torch.Tensor, grads, params) -> None:
    offset = 0
    for g, p in zip(grads, params):
        n = p.numel()
        if g is None:
            row[offset: offset + n].zero_()
        else:
            row[offset: offset + n].copy_(g.reshape(-1))
        offset += n


def flat_dim(params: Sequence[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


def assign_flat_grad(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Accumulate a flat gradient vector into `.grad` of `params` (like `.backward()` does)."""
    offset = 0
    for p in params:
        n = p.numel()
        g = flat[offset: offset + n].view_as(p).to(p.dtype)
        offset += n
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.add_(g)
    if offset != flat.numel():
        raise ValueError(f"flat gradient has {flat.numel()} entries, parameters have {offset}")


def accumulate_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    """Accumulate per-parameter gradients into `.grad` (None entries are skipped)."""
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g.detach())


GRAM_CHUNK = 1 << 20  # columns per float64 block of `gram64`


def gram64(G: torch.Tensor, chunk: int = GRAM_CHUNK) -> torch.Tensor:
    """G G^T in float64 ([T, T], on G's device) without a float64 copy of the whole [T, D] matrix:
    the columns are converted and multiplied in blocks of `chunk` (T x chunk float64 at a time)."""
    G = G.detach()
    T, D = G.shape
    if G.dtype == torch.float64 or D <= chunk:
        g = G.double()
        return g @ g.T
    out = torch.zeros(T, T, dtype=torch.float64, device=G.device)
    for start in range(0, D, chunk):
        block = G[:, start: start + chunk].double()
        out.addmm_(block, block.T)
    return out
