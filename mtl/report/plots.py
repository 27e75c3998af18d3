"""Figures from run files: per-task Δp bars (DB-MTL Fig. 4 style), training curves, task weights over
time, the sweep plots (DB-MTL Figs. 5-6) and the scalarization front. Matplotlib with the Agg backend
(no display).

Every per-method number is a mean over seeds drawn with its 95 % t-interval (mtl.scoring.stats; error
bars or shaded bands; one seed: no bar) and every figure says how many seeds. Each `<name>_figure`
returns the matplotlib Figure (tests read its labels and legends); `<name>(..., out)` saves it."""
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


def _task_colours(k: int) -> list:
    """k distinct colours (tab10 up to 10 tasks, tab20 up to 20, then a sampled colormap)."""
    plt = _plt()
    if k <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(k)]
    if k <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(k)]
    return [plt.get_cmap("nipy_spectral")(i / k) for i in range(k)]


def _interval(values) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the 95 % t-interval over seeds (mtl.scoring.stats; NaN bounds for n < 2)."""
    from mtl.scoring.stats import t_interval

    iv = t_interval(values)
    return iv.mean, iv.low, iv.high, iv.n


def _save(fig, out: Path, dpi: int = 110) -> Path:
    plt = _plt()
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out


def _err(mean: float, low: float, high: float) -> tuple[float, float]:
    return (0.0, 0.0) if np.isnan(low) else (mean - low, high - mean)


def delta_p_per_task_figure(df: pd.DataFrame):
    """Grouped bars: per method (rows with runs), the Δp of each task, mean over seeds, with its 95 %
    t-interval as an error bar (one seed: no bar, tick says "1 seed"); one colour per task, legend
    outside the axes."""
    cols = [c for c in df.columns if c.startswith("delta_p/")]
    sub = df[(df["seeds"] > 0) & (df["name"] != "stl")].dropna(subset=cols, how="all")
    if sub.empty or not cols:
        return None
    plt = _plt()
    tasks = [c.split("/", 1)[1] for c in cols]
    per_seed = df.attrs.get("seed_delta_p_per_task") or {}
    n, k = len(sub), len(cols)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 0.22 * n * k + 2.5)), 4.4))
    x = np.arange(n)
    colours = _task_colours(k)
    seeds_of = []
    for _, r in sub.iterrows():
        seeds_of.append(len(per_seed.get(r["name"], {})) or int(r["seeds"]))
    for j, t in enumerate(tasks):
        means, errs = [], [[], []]
        for _, r in sub.iterrows():
            vals = [v[t] for v in per_seed.get(r["name"], {}).values() if t in v]
            mean, lo, hi, _ = _interval(vals) if vals else (float(r[cols[j]]), np.nan, np.nan, 1)
            means.append(mean)
            e = _err(mean, lo, hi)
            errs[0].append(e[0])
            errs[1].append(e[1])
        ax.bar(x + (j - (k - 1) / 2) * width, means, width, yerr=errs, capsize=2, color=colours[j],
               error_kw={"lw": 0.8}, label=t)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"{m}\n({_seed_note([ns])})" for m, ns in zip(sub["method"], seeds_of)], rotation=45,
                  ha="right", fontsize=8)
    ax.set_xlabel("method")
    ax.set_ylabel("Δp per task vs reference (%)")
    ax.set_title(f"{df.attrs.get('benchmark', '')}: per-task Δp, mean over seeds ({_seed_note(seeds_of)}); "
                 f"bars: 95 % t-interval", fontsize=10)
    ax.legend(title="task", fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if k <= 12 else 2,
              frameon=False)
    fig.tight_layout()
    return fig


def delta_p_per_task_bars(df: pd.DataFrame, out: Path) -> Path | None:
    fig = delta_p_per_task_figure(df)
    return None if fig is None else _save(fig, out)


def _seed_dirs(df: pd.DataFrame) -> dict[str, list[str]]:
    """Row label -> run dirs of all its seeds (STL excluded: one run per task)."""
    out = {}
    for _, r in df.iterrows():
        if r["name"] == "stl" or not r.get("runs"):
            continue
        out[r["method"]] = sorted(str(r["runs"]).split(";"),
                                  key=lambda p: int(Path(p).name.removeprefix("seed") or 0))
    return out


def _first_runs(df: pd.DataFrame) -> dict[str, str]:
    """Row label -> run dir of its lowest seed (STL excluded: one run per task)."""
    return {m: dirs[0] for m, dirs in _seed_dirs(df).items()}


def _histories(df: pd.DataFrame, need: str | None = None) -> dict[str, list[list[dict]]]:
    """Row label -> the metrics.jsonl histories of its seeds (those with epochs, and with `need`)."""
    out = {}
    for m, dirs in _seed_dirs(df).items():
        hs = [h for h in (read_metrics(d) for d in dirs) if h and (need is None or need in h[0])]
        if hs:
            out[m] = hs
    return out


def _band(ax, hists: list[list[dict]], get, colour, style: str = "-", label: str | None = None) -> None:
    """Mean over seeds per epoch (epochs all seeds reached) and, with >= 2 seeds, the 95 % t-interval
    as a shaded band."""
    n_ep = min(len(h) for h in hists)
    ep = [hists[0][i]["epoch"] for i in range(n_ep)]
    vals = np.array([[get(h[i]) for i in range(n_ep)] for h in hists], dtype=float)
    ivs = [_interval(vals[:, i]) for i in range(n_ep)]
    mean = np.array([iv[0] for iv in ivs])
    ax.plot(ep, mean, style, color=colour, lw=1.3, label=label)
    if len(hists) >= 2:
        lo, hi = np.array([iv[1] for iv in ivs]), np.array([iv[2] for iv in ivs])
        ax.fill_between(ep, lo, hi, color=colour, alpha=0.18, lw=0)


def _grid(n_panels: int, *, ncols: int = 4, w: float = 4.0, h: float = 3.1):
    plt = _plt()
    ncols = min(ncols, n_panels)
    nrows = (n_panels + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    for ax in list(axes.flat)[n_panels:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n_panels]


def training_curves_figure(df: pd.DataFrame):
    """A grid of panels: train loss per task (log scale) and val/test Δp per epoch; one colour per
    method, mean over its seeds with the 95 % t-interval as a band; test solid, val dashed."""
    from matplotlib.lines import Line2D

    runs = _histories(df)
    if not runs:
        return None
    tasks = list(next(iter(runs.values()))[0][0].get("train_loss", {}))
    fig, axes = _grid(len(tasks) + 1)
    colours = _task_colours(len(runs))
    splits = [s for s in ("test", "val") if f"{s}_delta_p" in next(iter(runs.values()))[0][0]]
    for (m, hists), c in zip(runs.items(), colours):
        for j, t in enumerate(tasks):
            _band(axes[j], hists, lambda r, t=t: r["train_loss"].get(t, np.nan), c)
        for split, style in (("test", "-"), ("val", "--")):
            if split in splits:
                _band(axes[-1], hists, lambda r, k=f"{split}_delta_p": r.get(k, np.nan), c, style)
    for j, t in enumerate(tasks):
        axes[j].set_title(f"train loss: {t}", fontsize=9)
        axes[j].set_yscale("log")
        axes[j].set_ylabel("train loss (log)")
        axes[j].set_xlabel("epoch")
    axes[-1].set_title("Δp per epoch", fontsize=9)
    axes[-1].set_ylabel("Δp vs reference (%)")
    axes[-1].set_xlabel("epoch")
    handles = [Line2D([], [], color=c, lw=2, label=f"{m} ({_seed_note([len(h)])})")
               for (m, h), c in zip(runs.items(), colours)]
    handles += [Line2D([], [], color="black", ls=style, label=f"{split} Δp")
                for split, style in (("test", "-"), ("val", "--")) if split in splits]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ns = [len(h) for h in runs.values()]
    fig.suptitle(f"{df.attrs.get('benchmark', '')}: training curves, mean over seeds ({_seed_note(ns)}); "
                 f"bands: 95 % t-interval", fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(df: pd.DataFrame, out: Path) -> Path | None:
    fig = training_curves_figure(df)
    return None if fig is None else _save(fig, out, dpi=100)


def task_weights_figure(df: pd.DataFrame, key: str = "method/weights"):
    """Epoch-mean task weights of the methods that report them (metrics.jsonl `method/weights`), one
    panel per method, one colour per task (the same in every panel), mean over seeds with a band."""
    from matplotlib.lines import Line2D

    runs = _histories(df, need=key)
    if not runs:
        return None
    fig, axes = _grid(len(runs), w=3.6, h=2.8)
    first = next(iter(runs.values()))[0]
    k = len(first[0][key])
    tasks = list(first[0].get("train_loss", {})) or [str(i) for i in range(k)]
    tasks = (tasks + [str(i) for i in range(len(tasks), k)])[:k]
    colours = _task_colours(k)
    for ax, (m, hists) in zip(axes, runs.items()):
        for j in range(k):
            _band(ax, hists, lambda r, j=j: r[key][j] if j < len(r[key]) else np.nan, colours[j])
        ax.set_title(f"{m} ({_seed_note([len(hists)])})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("weight")
    handles = [Line2D([], [], color=colours[j], lw=2, label=tasks[j]) for j in range(k)]
    fig.legend(handles=handles, title="task", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
               frameon=False, ncol=1 if k <= 12 else 2)
    fig.suptitle("task weights (epoch mean), mean over seeds; bands: 95 % t-interval", fontsize=10)
    fig.tight_layout()
    return fig


def task_weights(df: pd.DataFrame, out: Path, key: str = "method/weights") -> Path | None:
    fig = task_weights_figure(df, key)
    return None if fig is None else _save(fig, out, dpi=100)


def benchmark_plots(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """All per-benchmark figures next to the tables: results/tables/<bench>_*.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = df.attrs["benchmark"]
    made = [delta_p_per_task_bars(df, out / f"{b}_delta_p_per_task.png"),
            training_curves(df, out / f"{b}_curves.png"),
            task_weights(df, out / f"{b}_weights.png")]
    return [p for p in made if p is not None]


def _number(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def sweep_families(df: pd.DataFrame, order: Sequence[str]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """[(family title, x-axis label, [(point, tick label)])]: β sweeps split by beta_sigma (constant β,
    β/k^σ), α_k sweeps into constant α_k and the named strategies; anything else one family of
    run tags."""
    first = df.drop_duplicates("point").set_index("point")
    if "beta" in df.columns:
        fams: dict[float, list] = {}
        for p in order:
            sigma = float(first.loc[p].get("beta_sigma", 0.0) or 0.0)
            fams.setdefault(sigma, []).append((p, f"{float(first.loc[p, 'beta']):g}"))
        return [("constant β" if sg == 0 else ("β / √k" if sg == 0.5 else f"β / k^{sg:g}"), "β", pts)
                for sg, pts in fams.items()]
    if "alpha" in df.columns:
        const = [(p, f"{_number(first.loc[p, 'alpha']):g}") for p in order if _number(first.loc[p, "alpha"]) is not None]
        named = [(p, str(first.loc[p, "alpha"])) for p in order if _number(first.loc[p, "alpha"]) is None]
        return [f for f in [("constant α_k = c", "c", const), ("α_k from the gradient norms", "rule", named)] if f[2]]
    return [("", "sweep point", [(p, p) for p in order])]


def sweep_figure(df: pd.DataFrame, *, order: Sequence[str], title: str, value: str = "delta_p"):
    """Per sweep point (DB-MTL Figs. 5-6): every seed as a dot, the mean with its 95 % t-interval
    (one seed: the dot alone), and a box only from 5 seeds; one axis per family, ticks are the
    hyperparameter's values."""
    plt = _plt()
    fams = sweep_families(df, order)
    widths = [max(2.0, 0.45 * len(pts) + 1.0) for _, _, pts in fams]
    fig, axes = plt.subplots(1, len(fams), figsize=(sum(widths) + 1.0, 3.8), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    ns = []
    rng = np.random.default_rng(0)
    for ax, (fam, xlabel, pts) in zip(axes[0], fams):
        for i, (p, _) in enumerate(pts):
            vals = df.loc[df["point"] == p, value].dropna().to_numpy(dtype=float)
            ns.append(len(vals))
            if len(vals) == 0:
                continue
            if len(vals) >= 5:
                ax.boxplot([vals], positions=[i], widths=0.5, showfliers=False, manage_ticks=False)
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=12, color="0.45", zorder=2,
                       label="seed" if i == 0 else None)
            mean, lo, hi, n = _interval(vals)
            e = _err(mean, lo, hi)
            ax.errorbar([i + 0.22], [mean], yerr=[[e[0]], [e[1]]] if n >= 2 else None, fmt="D", ms=4,
                        color="C3", capsize=3, zorder=3, label="mean, 95 % t-interval" if i == 0 else None)
        ax.set_xticks(range(len(pts)), [t for _, t in pts], fontsize=8)
        ax.set_xlim(-0.6, len(pts) - 0.4)
        ax.set_xlabel(xlabel)
        ax.set_title(fam, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Δp (%)" if value == "delta_p" else value)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    fig.suptitle(f"{title} ({_seed_note([n for n in ns if n])} per point)", fontsize=10)
    fig.tight_layout()
    return fig


def sweep_boxplot(df: pd.DataFrame, out: Path, *, order: Sequence[str], title: str,
                  value: str = "delta_p") -> Path:
    """The sweep figure (`sweep_figure`) saved to `out`."""
    return _save(sweep_figure(df, order=order, title=title, value=value), out)

def _seed_note(ns) -> str:
    """'3 seeds' or '1-3 seeds' for a legend or title."""
    ns = sorted({int(n) for n in ns})
    if not ns:
        return "no runs"
    return f"{ns[0]} seed{'s' if ns[0] != 1 else ''}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} seeds"


def front_plot(front: pd.DataFrame, methods: pd.DataFrame, tasks: Sequence[str], out: Path, *,
               benchmark: str = "", max_panels: int = 6) -> Path:
    """The front figure (`front_figure`) saved to `out`."""
    return _save(front_figure(front, methods, tasks, benchmark=benchmark, max_panels=max_panels), out)


def front_figure(front: pd.DataFrame, methods: pd.DataFrame, tasks: Sequence[str], *, benchmark: str = "",
                 max_panels: int = 6):
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
    # method colours without grey (the fixed-weight points are grey)
    palette = [c for i, c in enumerate(_task_colours(20 if len(methods) > 9 else 10))
               if i not in ((14, 15) if len(methods) > 9 else (7,))]
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
            c = palette[j % len(palette)]
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
    return fig
