"""Δp (task-level, DB-MTL Eq. 3, higher is better) and Δm (metric-level, nash-mtl, lower is better).

Both compare a run's metrics M to a single-task (STL) reference B, metric by metric:
    r_j = (-1)^{s_j} (M_j - B_j) / B_j,  s_j = 1 if lower is better, else 0   (higher r is better)
- Δp = 100 * mean over tasks of (mean over the task's metrics of r_j)   [LibMTL count_improvement]
  A task with five metrics (normals) weighs as much as a task with one.
- Δm = 100 * mean over all metrics of (-r_j)                              [nash-mtl delta_fn]
  A flat mean with the opposite sign: the normal task's five metrics dominate.
The reference is data: the paper's STL row or the user's own STL runs.
"""
from __future__ import annotations

from typing import Sequence

from mtl.benchmarks.base import Metrics, TaskSpec



def _relative(metrics: Metrics, reference: Metrics, tasks: Sequence[TaskSpec]) -> dict[str, list[float]]:
    """Per task, the signed relative improvements r_j of its metrics (higher is better)."""
    out: dict[str, list[float]] = {}
    for task in tasks:
        if task.name not in reference:
            raise KeyError(f"STL reference has no task {task.name!r} (has {sorted(reference)})")
        rel = []
        for m in task.metrics:
            try:
                base = float(reference[task.name][m.name])
                value = float(metrics[task.name][m.name])
            except KeyError as err:
                raise KeyError(f"metric {task.name}/{m.name} missing from run metrics or STL reference") from err
            if base == 0:
                raise ZeroDivisionError(f"STL reference of {task.name}/{m.name} is 0; Δ is undefined")
            sign = 1.0 if m.higher_is_better else -1.0
            rel.append(sign * (value - base) / base)
        out[task.name] = rel
    return out


def delta_p_per_task(metrics: Metrics, reference: Metrics, tasks: Sequence[TaskSpec]) -> dict[str, float]:
    """Per-task Δp in percent (mean over the task's metrics), higher is better."""
    return {t: 100.0 * sum(r) / len(r) for t, r in _relative(metrics, reference, tasks).items()}


def delta_p(metrics: Metrics, reference: Metrics, tasks: Sequence[TaskSpec]) -> float:
    """Task-level Δp in percent (DB-MTL Eq. 3); higher is better."""
    per_task = delta_p_per_task(metrics, reference, tasks)
    return sum(per_task.values()) / len(per_task)


def delta_m(metrics: Metrics, reference: Metrics, tasks: Sequence[TaskSpec]) -> float:
    """Metric-level Δm in percent (nash-mtl); lower is better."""
    rel = [r for rs in _relative(metrics, reference, tasks).values() for r in rs]
    return -100.0 * sum(rel) / len(rel)
