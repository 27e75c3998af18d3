"""Which epoch a run reports: the protocol's selection rule applied to the per-epoch history.

Rules:
- best_val: the epoch with the best validation score; its test metrics are reported.
- best_test: the epoch with the best test score (LibMTL on NYUv2/Cityscapes, which have no val split).
- last10: mean of the test metrics over the last 10 epochs (nash-mtl's README reporting).

What "best" means is the protocol's `selection_baseline` and `selection_ties`:
- baseline `epoch0` (LibMTL `_PerformanceMeter`, protocol A): the score is the improvement
  (count_improvement, i.e. Δp) of the epoch's metrics over the same split's metrics of the run's
  own epoch 0; the search starts from -100 and an epoch replaces the best only when strictly
  greater, so ties keep the earlier epoch. The reported Δp/Δm are still against the STL reference.
- baseline `stl`: the score is Δp against the STL reference (higher is better) when the protocol
  reports Δp (`protocol.delta` lists p first), else −Δm (nash-mtl's QM9 trainer keeps the epoch
  with the lowest validation Δm).
- ties `earliest` keeps the first of equal scores (LibMTL's `>`); `latest` the last (nash-mtl's `<=`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

RULES = ("best_val", "best_test", "last10")
BASELINES = ("epoch0", "stl")
TIES = ("earliest", "latest")
LIBMTL_START = -100.0  # LibMTL `_PerformanceMeter.best_result['improvement']` before any epoch


def improvement(new: Mapping[str, Mapping[str, float]], base: Mapping[str, Mapping[str, float]],
                tasks) -> float:
    """LibMTL `count_improvement(base, new, weight)` in percent: mean over tasks of the mean over the
    task's metrics of ±(new − base)/base (+ when higher is better). Division follows IEEE/numpy
    (a zero base gives ±inf or nan, which then never or always wins, as in LibMTL)."""
    per_task = []
    for task in tasks:
        rel = []
        for m in task.metrics:
            b, n = float(base[task.name][m.name]), float(new[task.name][m.name])
            d = n - b if m.higher_is_better else b - n
            rel.append(d / b if b != 0 else (math.copysign(math.inf, d) if d != 0 else math.nan))
        per_task.append(sum(rel) / len(rel))
    return 100.0 * sum(per_task) / len(per_task)


def delta_kind(delta: Any) -> str:
    """'p' or 'm': the first Δ the protocol reports (`protocol.delta` is 'p', 'm' or a list)."""
    kinds = [delta] if isinstance(delta, str) else list(delta or ["p"])
    kind = str(kinds[0])
    if kind not in ("p", "m"):
        raise ValueError(f"protocol.delta {delta!r}: entries must be 'p' or 'm'")
    return kind


def _all_nan(metrics: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether every metric value of one split's results is NaN (as an empty split leaves them)."""
    values = [v for task in metrics.values() for v in task.values() if isinstance(v, (int, float))]
    return bool(values) and all(math.isnan(v) for v in values)


def select(history: Sequence[dict[str, Any]], rule: str,
           deltas: Callable[[dict], dict[str, float]], *, baseline: str = "stl", ties: str = "earliest",
           delta: Any = "p", improvement_fn: Callable[[dict, dict], float] | None = None) -> dict[str, Any]:
    """Apply `rule` to `history` (one dict per epoch with 'epoch', 'val'/'test' metrics and
    '<split>_delta_p|m'). `deltas(metrics)` recomputes Δ for the reported metrics;
    `improvement_fn(new, base)` is LibMTL's improvement (needed for baseline='epoch0')."""
    if not history:
        raise ValueError("no epoch finished; nothing to select")
    if rule in ("best_val", "best_test"):
        split = rule.split("_")[1]
        if split not in history[0]:
            raise ValueError(f"selection rule {rule!r} needs a {split} split; this benchmark has none")
        if ties not in TIES:
            raise ValueError(f"selection_ties {ties!r} unknown; choose one of {TIES}")
        if baseline == "epoch0":
            if improvement_fn is None:
                raise ValueError("selection_baseline 'epoch0' needs improvement_fn (LibMTL's count_improvement)")
            base = history[0][split]
            scores = [improvement_fn(r[split], base) for r in history]
            best_score, best_i = LIBMTL_START, 0
        elif baseline == "stl":
            key, sign = (f"{split}_delta_p", 1.0) if delta_kind(delta) == "p" else (f"{split}_delta_m", -1.0)
            scores = [sign * r[key] for r in history]
            best_score, best_i = -math.inf, 0
        else:
            raise ValueError(f"selection_baseline {baseline!r} unknown; choose one of {BASELINES}")
        if all(_all_nan(r[split]) for r in history):
            raise ValueError(f"every {split} metric of every epoch is NaN (an empty {split} split?); no epoch "
                             f"can be selected on them")
        for i, s in enumerate(scores):  # NaN never wins (both comparisons are False)
            if s > best_score or (ties == "latest" and s == best_score):
                best_score, best_i = s, i
        best = history[best_i]
        return {"rule": rule, "epoch": best["epoch"], "baseline": baseline, "score": best_score,
                "metrics": best["test"], **deltas(best["test"])}
    if rule == "last10":
        window = history[-10:]
        tasks = window[0]["test"]
        mean = {t: {m: sum(r["test"][t][m] for r in window) / len(window) for m in tasks[t]} for t in tasks}
        return {"rule": rule, "epoch": [r["epoch"] for r in window], "metrics": mean, **deltas(mean)}
    raise ValueError(f"selection rule {rule!r} unknown; choose one of {RULES}")
