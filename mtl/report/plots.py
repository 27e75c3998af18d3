"""Figures from run files: per-task Δp bars (DB-MTL Fig. 4 style), training curves, task weights over
time, and the sweep box plots (DB-MTL Figs. 5-6). Matplotlib with the Agg backend (no display)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs of a run's metrics.jsonl up to its first damaged line (named on stderr): a plot
    from the readable epochs beats no table at all."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.exists():
        return []
    out = []
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        lines = []
        print(f"[mtl] warning: {p}: unreadable ({type(err).__name__}: {err}); its curves are left out",
              file=sys.stderr)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"a JSON {type(rec).__name__}, not an object")
        except ValueError as err:
            print(f"[mtl] warning: {p}:{n}: damaged line ({err}); its curves show only the {len(out)} epochs before it",
                  file=sys.stderr)
            break
        out.append(rec)
    return out


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
    runs = {m: _read_metrics(d) for m, d in _first_runs(df).items()}
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
        hist = _read_metrics(d)
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


def _seed_note(ns) -> str:
    """'3 seeds' or '1-3 seeds' for a legend or title."""
    ns = sorted({int(n) for n in ns})
    if not ns:
        return "no runs"
    return f"{ns[0]} seed{'s' if ns[0] != 1 else ''}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} seeds"


def front_plot(front: pd.DataFrame, methods: pd.DataFrame, tasks: Sequence[str], out: Path, *,
               benchmark: str = "", max_panels: int = 6) -> Path:
    """Per-task Δp of the fixed-weight runs (grey; their front, the points no other weight beats on
    both axes, joined by a line) and of every method (a point with its 95 % t-interval over seeds as
    error bars; one seed: an open marker without bars), one panel per pair of tasks."""
    plt = _plt()
    pairs = list(zip(tasks[:-1], tasks[1:])) if len(tasks) > 4 else [
        (a, b) for i, a in enumerate(tasks) for b in tasks[i + 1:]]
    pairs = pairs[:max_panels]
    ncols = min(3, len(pairs))
    nrows = (len(pairs) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.4 * nrows), squeeze=False)
    colours = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    for ax, (a, b) in zip(axes.flat, pairs):
        ax.scatter(front[a], front[b], s=14, color="0.55", zorder=2,
                   label=f"fixed weights ({len(front)} w, {_seed_note(front['seeds'])})")
        pts = front[[a, b]].to_numpy(dtype=float)
        keep = np.array([not np.any(np.all(np.delete(pts, i, 0) >= p, 1) & np.any(np.delete(pts, i, 0) > p, 1))
                         for i, p in enumerate(pts)])
        line = pts[keep][np.argsort(pts[keep][:, 0])]
        ax.plot(line[:, 0], line[:, 1], "-", color="0.35", lw=1.2, zorder=2, label="front of the fixed weights")
        for j, (_, r) in enumerate(methods.iterrows()):
            n = int(r["seeds"])
            c = colours(j % colours.N)
            label = f"{r['method']} ({_seed_note([n])})"
            if n >= 2:
                xerr = [[r[a] - r[f"{a}_low"]], [r[f"{a}_high"] - r[a]]]
                yerr = [[r[b] - r[f"{b}_low"]], [r[f"{b}_high"] - r[b]]]
                ax.errorbar(r[a], r[b], xerr=xerr, yerr=yerr, fmt="o", color=c, ms=6, capsize=3, zorder=3,
                            label=label)
            else:
                ax.scatter(r[a], r[b], s=40, facecolors="none", edgecolors=c, linewidths=1.5, zorder=3, label=label)
        ax.set_xlabel(f"Δp of {a} (%) ↑")
        ax.set_ylabel(f"Δp of {b} (%) ↑")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    note = "" if len(pairs) * 2 >= len(tasks) * (len(tasks) - 1) else f" (first {len(pairs)} task pairs)"
    fig.suptitle(f"{benchmark}: methods against the fixed-weight front{note}; bars: 95 % t-interval over seeds",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
