"""Figures from run files: per-task Δp bars (DB-MTL Fig. 4 style), training curves, task weights over
time, and the sweep box plots (DB-MTL Figs. 5-6). Matplotlib with the Agg backend (no display)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mtl.report.runs import read_metrics


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def delta_p_per_task_bars(df: pd.DataFrame, out: Path) -> Path | None:
    """Grouped bars: per method (rows with runs), the Δp of each task (mean over seeds)."""
    cols = [c for c in df.columns if c.startswith("delta_p/")]
    sub = df[(df["seeds"] > 0) & (df["name"] != "stl")].dropna(subset=cols, how="all")
    if sub.empty or not cols:
        return None
    plt = _plt()
    n, k = len(sub), len(cols)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * n * max(1, k / 2)), 3.6))
    x = np.arange(n)
    for j, c in enumerate(cols):
        ax.bar(x + (j - (k - 1) / 2) * width, sub[c].to_numpy(dtype=float), width, label=c.split("/", 1)[1])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, sub["method"], rotation=45, ha="right")
    ax.set_ylabel("Δp per task vs STL (%)")
    ax.set_title(f"{df.attrs.get('benchmark', '')}: per-task Δp (mean over seeds)")
    ax.legend(fontsize=7, ncol=min(k, 6))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _first_runs(df: pd.DataFrame) -> dict[str, str]:
    """Row label -> run dir of its lowest seed (STL excluded: one run per task)."""
    out = {}
    for _, r in df.iterrows():
        if r["name"] == "stl" or not r.get("runs"):
            continue
        dirs = sorted(str(r["runs"]).split(";"), key=lambda p: int(Path(p).name.removeprefix("seed") or 0))
        out[r["method"]] = dirs[0]
    return out


def training_curves(df: pd.DataFrame, out: Path) -> Path | None:
    """Train loss per task (log scale) and val/test Δp per epoch, one line per method (lowest seed)."""
    runs = {m: read_metrics(d) for m, d in _first_runs(df).items()}
    runs = {m: h for m, h in runs.items() if h}
    if not runs:
        return None
    tasks = list(next(iter(runs.values()))[0].get("train_loss", {}))
    plt = _plt()
    ncols = len(tasks) + 1
    fig, axes = plt.subplots(1, ncols, figsize=(3.2 * ncols, 3.0), squeeze=False)
    axes = axes[0]
    for m, hist in runs.items():
        ep = [r["epoch"] for r in hist]
        for j, t in enumerate(tasks):
            axes[j].plot(ep, [r["train_loss"].get(t, np.nan) for r in hist], label=m)
        line = None
        for split, style in (("test", "-"), ("val", "--")):
            key = f"{split}_delta_p"
            if key in hist[0]:
                kw = {"color": line.get_color()} if line is not None else {"label": m}
                (line,) = axes[-1].plot(ep, [r[key] for r in hist], style, **kw)
    for j, t in enumerate(tasks):
        axes[j].set_title(f"train loss: {t}", fontsize=9)
        axes[j].set_yscale("log")
        axes[j].set_xlabel("epoch")
    axes[-1].set_title("Δp per epoch (test —, val - -)", fontsize=9)
    axes[-1].set_xlabel("epoch")
    axes[-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def task_weights(df: pd.DataFrame, out: Path, key: str = "method/weights") -> Path | None:
    """Epoch-mean task weights of the methods that report them (metrics.jsonl `method/weights`)."""
    runs = {}
    for m, d in _first_runs(df).items():
        hist = read_metrics(d)
        if hist and key in hist[0]:
            runs[m] = hist
    if not runs:
        return None
    plt = _plt()
    n = len(runs)
    ncols = min(4, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, (m, hist) in zip(axes.flat, runs.items()):
        w = np.asarray([r[key] for r in hist], dtype=float)
        tasks = list(hist[0].get("train_loss", {})) or [str(i) for i in range(w.shape[1])]
        for j in range(w.shape[1]):
            ax.plot([r["epoch"] for r in hist], w[:, j], label=tasks[j] if j < len(tasks) else str(j))
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("epoch")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("task weights (epoch mean)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def benchmark_plots(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """All per-benchmark figures next to the tables: results/tables/<bench>_*.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = df.attrs["benchmark"]
    made = [delta_p_per_task_bars(df, out / f"{b}_delta_p_per_task.png"),
            training_curves(df, out / f"{b}_curves.png"),
            task_weights(df, out / f"{b}_weights.png")]
    return [p for p in made if p is not None]


def sweep_boxplot(df: pd.DataFrame, out: Path, *, order: Sequence[str], title: str,
                  value: str = "delta_p") -> Path:
    """Box plot of `value` over seeds per sweep point (x in `order`), like DB-MTL Figs. 5-6."""
    plt = _plt()
    data = [df.loc[df["point"] == p, value].dropna().to_numpy(dtype=float) for p in order]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(order) + 1.5), 3.4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(order) + 1), list(order), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Δp (%)" if value == "delta_p" else value)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
