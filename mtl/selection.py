"""Which epoch a run reports: the protocol's selection rule applied to the per-epoch history.

- best_val: epoch of the best validation score (LibMTL with a val split; nash-mtl on QM9).
- best_test: epoch of the best test score (LibMTL on NYUv2/Cityscapes, which have no val split).
- last10: mean of the test metrics over the last 10 epochs (nash-mtl's README reporting).
The score is Δp (higher is better) when the protocol reports Δp, else −Δm. Ties keep the
earliest epoch.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

RULES = ("best_val", "best_test", "last10")


def score(record: dict[str, Any], split: str) -> float:
    if f"{split}_delta_p" in record:
        return record[f"{split}_delta_p"]
    return -record[f"{split}_delta_m"]


def select(history: Sequence[dict[str, Any]], rule: str,
           deltas: Callable[[dict], dict[str, float]]) -> dict[str, Any]:
    """Apply `rule` to `history` (one dict per epoch with 'epoch', 'val'/'test' metrics and
    '<split>_delta_p|m'). `deltas(metrics)` recomputes Δ for averaged metrics (last10)."""
    if not history:
        raise ValueError("no epoch finished; nothing to select")
    if rule in ("best_val", "best_test"):
        split = rule.split("_")[1]
        if split not in history[0]:
            raise ValueError(f"selection rule {rule!r} needs a {split} split; this benchmark has none")
        best = max(history, key=lambda r: (score(r, split), -r["epoch"]))
        return {"rule": rule, "epoch": best["epoch"], "metrics": best["test"],
                **{k: v for k, v in deltas(best["test"]).items()}}
    if rule == "last10":
        window = history[-10:]
        tasks = window[0]["test"]
        mean = {t: {m: sum(r["test"][t][m] for r in window) / len(window) for m in tasks[t]} for t in tasks}
        return {"rule": rule, "epoch": [r["epoch"] for r in window], "metrics": mean, **deltas(mean)}
    raise ValueError(f"selection rule {rule!r} unknown; choose one of {RULES}")
