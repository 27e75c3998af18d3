"""Collect run summaries (results/runs/**/summary.json) into tables. Files are the source of truth."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from mtl.errors import brief

# keys the tables need (they recompute Δp/Δm from the metrics); other readers ask for more
SUMMARY_KEYS = ("seed", "metrics")


def read_summary(path: str | Path, required: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, Any] | None:
    """The parsed summary.json at `path`, or None (with one warning line on stderr naming the file
    and what to do) when it is damaged: not JSON, not an object, or missing a `required` key. Table
    and sweep readers skip such a run and go on with the others."""
    path = Path(path)
    try:
        s = json.loads(path.read_text())
        problem = None if isinstance(s, dict) else f"a JSON {type(s).__name__}, not an object"
        if problem is None:
            missing = [k for k in required if k not in s]
            problem = f"no {', '.join(missing)}" if missing else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = brief(err)
    if problem is None:
        return s
    print(f"[mtl] warning: {path}: damaged summary ({problem}); skipped. Delete it and re-run that run "
          f"(same command, its config is {path.parent / 'config.yaml'}) to write it again", file=sys.stderr)
    return None


def load_summaries(root: str | Path, benchmark: str | None = None) -> pd.DataFrame:
    """One row per finished run: benchmark, method (folder name, incl. tag), seed, delta_p, delta_m,
    and one column per `task/metric` of the selected epoch. Damaged summaries are skipped with a warning."""
    rows = []
    for path in sorted(Path(root).glob("*/*/seed*/summary.json")):
        s = read_summary(path, SUMMARY_KEYS + ("delta_p", "delta_m"))
        if s is None:
            continue
        bench = path.parents[2].name  # the config name (qm9_small), as in the run directory
        if benchmark is not None and bench != benchmark:
            continue
        row = {"benchmark": bench, "method": path.parent.parent.name, "seed": s["seed"],
               "delta_p": s["delta_p"], "delta_m": s["delta_m"], "wall_time_s": s.get("wall_time_s"),
               "path": str(path.parent)}
        for task, metrics in s["metrics"].items():
            for metric, value in metrics.items():
                row[f"{task}/{metric}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (benchmark, method); sorted by Δp, best first."""
    if df.empty:
        return df
    value_cols = [c for c in df.columns if c not in ("benchmark", "method", "seed", "path")]
    g = df.groupby(["benchmark", "method"])[value_cols]
    out = g.mean()
    std = g.std(ddof=0).add_suffix("_std")
    out = out.join(std)
    out["seeds"] = df.groupby(["benchmark", "method"])["seed"].count()
    return out.reset_index().sort_values(["benchmark", "delta_p"], ascending=[True, False])


def delta_table_markdown(agg: pd.DataFrame) -> str:
    """A compact Markdown table: method, Δp ± std, Δm, seeds, per-metric means."""
    metric_cols = [c for c in agg.columns if "/" in c and not c.endswith("_std")]
    header = ["method", "Δp (%) ↑", "Δm (%) ↓", "seeds", *metric_cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in agg.iterrows():
        cells = [r["method"], f"{r['delta_p']:+.2f} ± {r['delta_p_std']:.2f}", f"{r['delta_m']:+.2f}",
                 str(int(r["seeds"])), *[f"{r[c]:.4g}" for c in metric_cols]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
