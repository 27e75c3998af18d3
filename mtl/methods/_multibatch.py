"""Per-row Jacobians for methods that consume several mini-batches per step (MoDo, SDMGrad).

`losses` is [k, T]: row i holds the T task losses of batch i. The rows come from separate
forward passes that share only the parameters. Backpropagating `losses[i, t]` through the
stacked tensor would also push zero gradients through the other k-1 graphs (k times the work,
and freeing them early breaks the next row), so when `losses` is `torch.stack(rows, 0)` we start
each backward at the row itself (an autograd `GradientEdge`) and free each row's graph after its
last task. Otherwise (any other construction) every row is differentiated through `losses` with
the graph retained until the last row: same numbers, k times the backward work, with a warning.
"""
from __future__ import annotations

import warnings

import torch
from torch.autograd.graph import GradientEdge

from mtl.engine import GradientEngine, TaskGradients


def _flatten(grads, params) -> torch.Tensor:
    return torch.cat([
        (g.reshape(-1) if g is not None else torch.zeros(p.numel(), device=p.device, dtype=p.dtype))
        for g, p in zip(grads, params)
    ])


def _row_roots(losses: torch.Tensor) -> list[GradientEdge] | None:
    fn = losses.grad_fn
    if (fn is None or fn.name() != "StackBackward0" or getattr(fn, "_saved_dim", None) != 0
            or len(fn.next_functions) != losses.shape[0]):
        return None
    if any(node is None for node, _ in fn.next_functions):
        return None
    return [GradientEdge(node, nr) for node, nr in fn.next_functions]


def row_jacobians(engine: GradientEngine, losses: torch.Tensor, shared, task) -> list[TaskGradients]:
    """One `TaskGradients` per row of `losses` [k, T] (shared grads [T, D] + head grads)."""
    k, T = losses.shape
    roots = _row_roots(losses)
    if roots is None:
        warnings.warn(
            "multi-batch losses are not torch.stack(rows, dim=0): differentiating each row through "
            "the whole stacked graph (correct, but k times the backward work)", stacklevel=3,
        )
        return [engine.jacobian(losses[i], shared, task, retain_graph=i < k - 1) for i in range(k)]
    params = list(shared) + list(task)
    out = []
    for i in range(k):
        rows, task_rows = [], []
        for t in range(T):
            onehot = torch.zeros(T, device=losses.device, dtype=losses.dtype)
            onehot[t] = 1.0
            grads = torch.autograd.grad(
                [roots[i]], params, grad_outputs=[onehot], retain_graph=t < T - 1, allow_unused=True
            )
            engine.backward_passes += 1
            rows.append(_flatten(grads[: len(shared)], shared))
            task_rows.append(list(grads[len(shared):]))
        out.append(TaskGradients(torch.stack(rows), task_rows))
    for grads in out:  # fp16: all rows checked before the method uses any of them
        engine.check(grads.shared, grads.task)
    return out
