"""Paper-layout tables from run files: our mean ± std over seeds per metric, Δp, Δm and mean rank,
with the paper's value and the difference beside each of ours.

Δp/Δm are recomputed per seed from the selected metrics in summary.json against the benchmark's
`reference` (the paper's STL row for paper benchmarks, see configs/benchmark/*.yaml) or, with
reference="own", against the mean of our own STL runs; the mean over seeds is reported.
Rows: the paper's methods in paper order (a method without runs is shown as missing, "—"), then
our other methods. STL runs (`stl_<i>` folders, one per task) are merged into one STL row.
Mean rank (MR): per metric, the rank of each method among the MTL rows that have a value (1 = best,
ties averaged, STL excluded), averaged over metrics; "MR paper" ranks the paper's rows the same way.
Spread over seeds is the population std (ddof=0), here and in `aggregate` (CSV column `<key>_std`).

Uncertainty (mtl.scoring.stats, docs/statistics.md): every metric mean, Δp and Δm carries its 95 %
t-interval over seeds (`<key>_lo`, `<key>_hi`; one seed: no interval, marked † in the table); MR its
percentile interval under a bootstrap over seeds (`mr_lo`, `mr_hi`); `p_first`/`p_top3` are the
probabilities that a row ranks first / in the top 3 by Δp under a bootstrap over seeds. Beside each
paper row, `repro` says whether our Δp over seeds is consistent with the paper's Δp ± std over its
PAPER_SEEDS seeds (stats.REPRO_RULE); the table closes with "reproduced: k of m methods; differs: ...".
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.benchmarks import BenchmarkSpec, spec
from mtl.benchmarks.base import Metrics
from mtl.scoring.delta import delta_m, delta_p, delta_p_per_task
from mtl.benchmarks.paper import PaperRows, display_name, load_paper
from mtl.report.runs import benchmarks_with_runs, metric_columns, metrics_of, read_runs
from mtl.scoring import stats

# The DB-MTL paper's ± is the std of Δp over its runs; 3 seeds (as its tables state for Δp ± std)
PAPER_SEEDS = 3
BOOT_MR = 2000  # bootstrap resamples for the MR interval
BOOT_RANK = 10000  # bootstrap resamples for P(first) / P(top 3)
ONE_SEED = "†"  # marks a value from one seed (no interval) in the rendered tables

MISSING = "—"


# ---------------------------------------------------------------------------------------------
@dataclass
class RunSet:
    """Per row name: seed -> metrics (task -> metric -> value); plus where each came from."""

    seeds: dict[str, dict[int, Metrics]] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)


_STL_DIR = re.compile(r"^stl_(\d+)$")
_TUNED_TAG = re.compile(r"^_tuned(\d+)$")  # `make tune`: the best of k trials (chosen on val), on seeds


_TUNED_DIR = re.compile(r"^(.+)_tuned(\d+)$")


def tuned_label(name: str) -> str | None:
    """'<method> tuned (k trials, val)' for a folder of `make tune`'s tuned runs, else None."""
    m = _TUNED_DIR.match(name)
    return f"{display_name(m.group(1))} tuned ({m.group(2)} trials, val)" if m else None


def collect_runs(root: str | Path, benchmark: str, tasks: list[str], *, rule: str | None = None,
                 include_tags: bool = False, only: list[str] | None = None) -> RunSet:
    """Finished runs of `benchmark` under `root` (read by mtl.report.runs), grouped into table rows.

    Untagged methods are rows named by the method; `stl_<i>` folders (task i = tasks[i]) merge into
    row "stl" (task i's metrics from run stl_<i>, per seed); other tagged folders (sweeps) are rows
    only with `include_tags` or when named in `only`; `make tune`'s `<method>_tuned<k>` folders are
    rows always (labelled "<method> tuned (k trials, val)" beside the default row)."""
    out = RunSet()
    stl_parts: dict[int, dict[str, dict[str, float]]] = {}
    df = read_runs(root, benchmark, rule=rule, config=False)  # damaged summaries: named on stderr, skipped
    keys = metric_columns(df)
    for _, r in df.iterrows():
        folder, seed = r["method"], int(r["seed"])
        metrics = metrics_of(r, keys)
        m = _STL_DIR.match(folder)
        if m and r["trained"] == "stl":
            task = tasks[int(m.group(1))]
            stl_parts.setdefault(seed, {})[task] = metrics.get(task, {})
            out.paths.setdefault("stl", []).append(r["path"])
            continue
        tagged = folder != r["trained"] and not _TUNED_TAG.match(folder[len(r["trained"]):])
        if only is not None and folder not in only:
            continue
        if tagged and not include_tags and only is None:
            continue
        out.seeds.setdefault(folder, {})[seed] = metrics
        out.paths.setdefault(folder, []).append(r["path"])
    if stl_parts and (only is None or "stl" in only):
        out.seeds["stl"] = dict(sorted(stl_parts.items()))
    return out


# ---------------------------------------------------------------------------------------------
def _stats(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=0))


def _with_interval(row: dict[str, Any], key: str, values: list[float]) -> None:
    """row[key] = mean, row[key_std] = std (ddof=0), row[key_lo/_hi] = 95 % t-interval over seeds."""
    row[key], row[f"{key}_std"] = _stats(values)
    ci = stats.t_interval(values)
    row[f"{key}_lo"], row[f"{key}_hi"] = ci.low, ci.high


def _flat(metrics: Metrics, key: str) -> float:
    task, metric = key.split("/", 1)
    return float(metrics.get(task, {}).get(metric, math.nan))


def _complete(metrics: Metrics, info: BenchmarkSpec) -> bool:
    return all(not math.isnan(_flat(metrics, k)) for k in info.keys)


def mean_ranks(values: pd.DataFrame, info: BenchmarkSpec) -> pd.Series:
    """Mean over metrics of each row's rank (1 = best, ties averaged); NaN cells are not ranked."""
    ranks = pd.DataFrame(index=values.index)
    for key in info.keys:
        if key in values:
            ranks[key] = values[key].rank(ascending=not info.higher_is_better(key), method="average")
    return ranks.mean(axis=1, skipna=True)


def build_table(benchmark: str, root: str | Path = "results/runs", *, rule: str | None = None,
                reference: str = "config", include_tags: bool = False, only: list[str] | None = None,
                info: BenchmarkSpec | None = None, paper: PaperRows | None | bool = True) -> pd.DataFrame:
    """One row per method (paper order first): ours (mean, std), paper value and difference per
    metric, Δp, Δm, MR; `status` is ok | missing (no runs) | partial (STL with tasks missing)."""
    info = info or spec(benchmark)
    runs = collect_runs(root, benchmark, [t.name for t in info.tasks], rule=rule, include_tags=include_tags,
                        only=only)
    paper_rows = load_paper(benchmark) if paper is True else (paper or None)
    ref, ref_m = info.reference, info.reference_m
    if reference == "own":
        stl = runs.seeds.get("stl", {})
        full = [m for m in stl.values() if _complete(m, info)]
        if not full:
            raise ValueError(f"reference=own needs finished STL runs of every task of {benchmark} "
                             f"(method=stl method.task=<i> run.tag=_<i>) under {root}")
        ref = {t.name: {m.name: float(np.mean([_flat(r, f'{t.name}/{m.name}') for r in full]))
                        for m in t.metrics} for t in info.tasks}
        ref_m = ref
    elif reference != "config":
        raise ValueError(f"reference must be 'config' or 'own', got {reference!r}")

    names = list(paper_rows.order) if paper_rows else []
    if not paper_rows and "stl" in runs.seeds:
        names.append("stl")
    extras = [n for n in runs.seeds if n not in names]
    rows = []
    seed_dp: dict[str, dict[int, float]] = {}
    seed_dm: dict[str, dict[int, float]] = {}
    seed_dpt: dict[str, dict[int, dict[str, float]]] = {}  # per-task Δp per seed (the figures' intervals)
    seed_metrics: dict[str, np.ndarray] = {}
    verdicts: dict[str, stats.Reproduction] = {}
    for name in names + extras:
        row: dict[str, Any] = {"method": tuned_label(name) or display_name(name), "name": name}
        per_seed = runs.seeds.get(name, {})
        row["seeds"] = len(per_seed)
        row["status"] = "ok" if per_seed else "missing"
        for key in info.keys:
            _with_interval(row, key, [_flat(m, key) for m in per_seed.values()])
        complete = {s: m for s, m in per_seed.items() if _complete(m, info)}
        if per_seed and len(complete) < len(per_seed):
            row["status"] = "partial"
        dps = [delta_p(m, ref, info.tasks) for m in complete.values()]
        dms = [delta_m(m, ref_m, info.tasks) for m in complete.values()]
        _with_interval(row, "delta_p", dps)
        _with_interval(row, "delta_m", dms)
        seed_dp[name] = dict(zip(complete, dps))
        seed_dm[name] = dict(zip(complete, dms))
        seed_metrics[name] = np.array([[_flat(m, k) for k in info.keys] for m in per_seed.values()],
                                      dtype=float).reshape(-1, len(info.keys))
        seed_dpt[name] = {s: delta_p_per_task(m, ref, info.tasks) for s, m in complete.items()}
        for t in info.tasks:
            row[f"delta_p/{t.name}"] = _stats([v[t.name] for v in seed_dpt[name].values()])[0]
        if paper_rows and "avg" in paper_rows.table.extra:
            _with_interval(row, "avg", [float(np.mean([_flat(m, k) for k in info.keys])) for m in complete.values()])
        if paper_rows:
            prow = paper_rows.rows.get(name, {})
            for key in [*info.keys, "delta_p", *paper_rows.table.extra]:
                row[f"{key}_paper"] = prow.get(key, math.nan)
                row[f"{key}_diff"] = row.get(key, math.nan) - row[f"{key}_paper"]
            row["delta_p_paper_pm"] = prow.get("delta_p_pm", math.nan)
            if name != "stl" and not math.isnan(row["delta_p_paper"]):
                verdicts[name] = v = stats.reproduction(dps, row["delta_p_paper"], row["delta_p_paper_pm"],
                                                        PAPER_SEEDS)
                row["repro"], row["repro_p"], row["repro_rule"] = v.status, v.p, v.rule
        row["runs"] = ";".join(runs.paths.get(name, []))
        rows.append(row)
    empty = ["method", "name", "seeds", "status", *info.keys, "delta_p", "delta_m", "runs"]  # no paper, no runs
    df = pd.DataFrame(rows, columns=None if rows else empty)
    is_extra = df["name"].isin(extras)  # our methods outside the paper table: best Δp first
    df = pd.concat([df[~is_extra], df[is_extra].sort_values("delta_p", ascending=False)], ignore_index=True)
    df = _tuned_beside_default(df)
    mtl_rows = df["name"] != "stl"
    df["mr"] = math.nan
    df.loc[mtl_rows, "mr"] = mean_ranks(df.loc[mtl_rows, info.keys], info)
    ranked = [n for n in df.loc[mtl_rows & (df["seeds"] > 0), "name"]]
    df["mr_lo"] = df["mr_hi"] = df["p_first"] = df["p_top3"] = math.nan
    if ranked:
        boot = stats.bootstrap_mean_ranks({n: seed_metrics[n] for n in ranked},
                                          [info.higher_is_better(k) for k in info.keys], n_boot=BOOT_MR)
        boot = boot.set_index("method")
        df["mr_lo"], df["mr_hi"] = df["name"].map(boot["mr_low"]), df["name"].map(boot["mr_high"])
        probs = stats.bootstrap_ranks({n: seed_dp[n] for n in ranked if seed_dp[n]}, n_boot=BOOT_RANK)
        df["p_first"] = df["name"].map(dict(zip(probs["method"], probs["p_first"])))
        df["p_top3"] = df["name"].map(dict(zip(probs["method"], probs["p_top3"])))
    if paper_rows:
        paper_vals = df.loc[mtl_rows, [f"{k}_paper" for k in info.keys]]
        paper_vals.columns = info.keys
        df["mr_paper"] = math.nan
        df.loc[mtl_rows, "mr_paper"] = mean_ranks(paper_vals, info)
        df["mr_diff"] = df["mr"] - df["mr_paper"]
    df.attrs.update(benchmark=benchmark, keys=info.keys, reference=reference,
                    reference_source=info.reference_source if reference == "config" else f"own STL runs under {root}",
                    title=paper_rows.table.title if paper_rows else benchmark,
                    decimals=dict(paper_rows.decimals) if paper_rows else {},
                    has_paper=bool(paper_rows), extra=list(paper_rows.table.extra) if paper_rows else [],
                    seed_delta_p=seed_dp, seed_delta_m=seed_dm, seed_delta_p_per_task=seed_dpt,
                    reproduction=stats.reproduction_line(verdicts) if verdicts else "")
    return df


def _tuned_beside_default(df: pd.DataFrame) -> pd.DataFrame:
    """Move each `<method>_tuned<k>` row right after its `<method>` row (where that row exists)."""
    names = list(df["name"])
    tuned = {n: m.group(1) for n in names if (m := _TUNED_DIR.match(n))}
    order = []
    for n in names:
        if n in tuned:
            continue
        order.append(n)
        order.extend(sorted(t for t, b in tuned.items() if b == n))
    order.extend(t for t in tuned if t not in order)
    return df.set_index("name", drop=False).loc[order].reset_index(drop=True)


# --- rendering ---------------------------------------------------------------------------------
def _fmt(x: float, key: str, decimals: dict[str, int], signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    d = decimals.get(key)
    if d is None:
        d = 2 if key.startswith(("delta", "mr", "avg")) else None
    text = f"{x:+.{d}f}" if (d is not None and signed) else (f"{x:.{d}f}" if d is not None else f"{x:.4g}")
    return text


def _columns(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(column key, header) pairs of the rendered table."""
    cols = [(k, k.split("/", 1)[0] + " " + k.split("/", 1)[1] if "/" in k else k) for k in df.attrs["keys"]]
    cols += [(e, e) for e in df.attrs["extra"]]
    cols += [("delta_p", "Δp (%) ↑"), ("delta_m", "Δm (%) ↓"), ("mr", "MR ↓")]
    return cols


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _cell(row: pd.Series, key: str, df: pd.DataFrame, *, latex: bool = False) -> str:
    """ours 'mean [lo, hi]' (95 % interval over seeds; one seed: 'mean†'), then '(paper; diff)'."""
    dec = df.attrs["decimals"]
    signed = key in ("delta_p", "delta_m")
    ours = _fmt(row.get(key, math.nan), key, dec, signed)
    lo, hi = row.get(f"{key}_lo", math.nan), row.get(f"{key}_hi", math.nan)
    if ours != MISSING and not _isnan(lo) and not _isnan(hi):
        lo_t, hi_t = _fmt(lo, key, dec, signed), _fmt(hi, key, dec, signed)
        ours = f"${ours}_{{[{lo_t}, {hi_t}]}}$" if latex else f"{ours} [{lo_t}, {hi_t}]"
    elif ours != MISSING and row["seeds"] == 1 and (key != "mr" or not _isnan(row.get("mr"))):
        ours = f"${ours}^{{\\dagger}}$" if latex else f"{ours}{ONE_SEED}"
    elif latex and ours != MISSING:
        ours = f"${ours}$"
    if latex and ours == MISSING:
        ours = "--"
    pkey = f"{key}_paper"
    if df.attrs["has_paper"] and pkey in row and not (isinstance(row[pkey], float) and math.isnan(row[pkey])):
        paper = _fmt(row[pkey], key, dec, signed)
        diff = row.get(f"{key}_diff", math.nan)
        dtext = _fmt(diff, key, dec, True) if not (isinstance(diff, float) and math.isnan(diff)) else MISSING
        if latex:
            dtext = dtext.replace(MISSING, "--")
            return f"{ours} {{\\scriptsize ({paper}; {dtext})}}"
        return f"{ours} ({paper}; {dtext})"
    return ours


def _repro_cell(row: pd.Series) -> str:
    status = row.get("repro")
    if _isnan(status) or status == "untested" and row["seeds"] == 0:
        return MISSING
    p = row.get("repro_p", math.nan)
    return f"{status} (p = {p:.2g})" if not _isnan(p) else str(status)


def rank_stability_lines(df: pd.DataFrame) -> list[str]:
    """'P(first)' and 'P(top 3)' by Δp under the bootstrap over seeds, most likely first."""
    probs = df.dropna(subset=["p_first"]).sort_values(["p_first", "p_top3"], ascending=False)
    if probs.empty:
        return []
    first = ", ".join(f"{r.method} {r.p_first:.2f}" for r in probs.itertuples() if r.p_first >= 0.005)
    top = ", ".join(f"{r.method} {r.p_top3:.2f}" for r in probs.itertuples() if r.p_top3 >= 0.005)
    lines = [f"Rank stability (by Δp; each method's seeds resampled, {BOOT_RANK:,} bootstraps): "
             f"P(first): {first or 'none'}; P(top 3): {top or 'none'}."]
    if (probs["seeds"] < 2).any():
        lines.append("Methods with one seed keep their one value in every resample: their probabilities "
                     "understate the uncertainty.")
    return lines


def to_markdown(df: pd.DataFrame) -> str:
    cols = _columns(df)
    has_paper = df.attrs["has_paper"]
    lines = [f"### {df.attrs['title']}", ""]
    lines.append("Cells: ours mean [95 % t-interval over seeds]" + (" (paper; ours − paper)" if has_paper else "")
                 + f"; {ONE_SEED} = 1 seed: no interval; {MISSING} = no finished run. MR interval: "
                 f"bootstrap over seeds ({BOOT_MR:,} resamples).")
    lines.append(f"Δp/Δm against: {df.attrs['reference_source']}. MR = mean rank over metrics "
                 "among the MTL rows with runs" + (" (paper: among the paper's rows)." if has_paper else "."))
    lines.append("")
    header = ["method", "seeds", *[h for _, h in cols]] + (["vs paper Δp"] if has_paper else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in df.iterrows():
        cells = [row["method"], str(int(row["seeds"])) if row["seeds"] else MISSING,
                 *[_cell(row, k, df) for k, _ in cols]] + ([_repro_cell(row)] if has_paper else [])
        lines.append("| " + " | ".join(cells) + " |")
    missing = df.loc[df["status"] == "missing", "method"].tolist()
    if missing:
        lines += ["", f"No runs yet ({len(missing)}): {', '.join(missing)}."]
    stab = rank_stability_lines(df)
    if stab:
        lines += ["", *stab]
    if df.attrs.get("reproduction"):
        lines += ["", f"Reproduction rule (Δp, paper ± over {PAPER_SEEDS} seeds): {stats.REPRO_RULE}", "",
                  f"**{df.attrs['reproduction']}**"]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%")
            .replace("Δp", "$\\Delta_p$").replace("Δm", "$\\Delta_m$").replace("↑", "$\\uparrow$")
            .replace("↓", "$\\downarrow$").replace("±", "$\\pm$").replace("−", "-"))


def to_latex(df: pd.DataFrame) -> str:
    cols = _columns(df)
    head = ["Method", "Seeds", *[_tex_escape(h) for _, h in cols]]
    lines = ["% generated by scripts/tables.py from results/runs; cells: ours mean_[95% t-interval over seeds] "
             "(paper; ours - paper); dagger: 1 seed, no interval; MR interval: bootstrap over seeds",
             "\\begin{table}[t]", "\\centering", "\\resizebox{\\linewidth}{!}{%",
             "\\begin{tabular}{l" + "c" * (len(head) - 1) + "}", "\\toprule", " & ".join(head) + " \\\\",
             "\\midrule"]
    for _, row in df.iterrows():
        cells = [_tex_escape(row["method"]), str(int(row["seeds"])) if row["seeds"] else "--",
                 *[_cell(row, k, df, latex=True) for k, _ in cols]]
        lines.append(" & ".join(cells) + " \\\\")
    caption = _tex_escape(df.attrs["title"]) + (". Subscripts: 95\\% t-interval over seeds; $^\\dagger$: 1 seed, "
                                                "no interval")
    if df.attrs.get("reproduction"):
        caption += ". Reproduced (paper $\\Delta_p$): " + _tex_escape(df.attrs["reproduction"].removeprefix("reproduced: "))
    lines += ["\\bottomrule", "\\end{tabular}}", f"\\caption{{{caption}}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, out_dir: str | Path, stem: str | None = None) -> list[Path]:
    """<out_dir>/<benchmark>.{md,tex,csv}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or df.attrs["benchmark"]
    paths = [out / f"{stem}.md", out / f"{stem}.tex", out / f"{stem}.csv"]
    paths[0].write_text(to_markdown(df))
    paths[1].write_text(to_latex(df))
    df.to_csv(paths[2], index=False)
    return paths


def wandb_rows(df: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the W&B table: per method our row (source "ours") and, where the paper has
    one, the paper's row (source "paper") beside it; per-metric values, Δp, Δm and MR."""
    keys, extra = list(df.attrs["keys"]), list(df.attrs["extra"])
    bounds = [f"{k}_{b}" for k in keys for b in ("lo", "hi")]
    columns = ["method", "source", "seeds", "status", *keys, *extra, "delta_p", "delta_p_std", "delta_m", "mr",
               "delta_p_lo", "delta_p_hi", "delta_m_lo", "delta_m_hi", "mr_lo", "mr_hi", *bounds,
               "interval", "p_first", "p_top3", "repro", "repro_p"]

    def cell(row: pd.Series, key: str) -> Any:
        v = row.get(key, math.nan)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    rows = []
    for _, r in df.iterrows():
        kind = "t95" if r["seeds"] > 1 else (stats.NO_INTERVAL if r["seeds"] == 1 else None)
        rows.append([r["method"], "ours", int(r["seeds"]), r["status"], *[cell(r, k) for k in [*keys, *extra]],
                     cell(r, "delta_p"), cell(r, "delta_p_std"), cell(r, "delta_m"), cell(r, "mr"),
                     *[cell(r, k) for k in ["delta_p_lo", "delta_p_hi", "delta_m_lo", "delta_m_hi", "mr_lo", "mr_hi",
                                            *bounds]],
                     kind, cell(r, "p_first"), cell(r, "p_top3"), cell(r, "repro"), cell(r, "repro_p")])
        paper = [cell(r, f"{k}_paper") for k in [*keys, *extra, "delta_p"]]
        if df.attrs["has_paper"] and any(v is not None for v in paper):
            rows.append([r["method"], "paper", None, "paper", *paper,
                         cell(r, "delta_p_paper_pm"), cell(r, "delta_m_paper"), cell(r, "mr_paper"),
                         *[None] * (6 + len(bounds)), f"± over {PAPER_SEEDS} seeds", None, None, None, None])
    return columns, rows


def log_table(df: pd.DataFrame, images: list[Path], logger: dict[str, Any], stem: str) -> str | None:
    """Log one benchmark's table and its plots to W&B (run `tables-<stem>`, job_type "table") when
    `logger` is the wandb logger config; returns the W&B run directory, None when nothing was logged."""
    from mtl.run.loggers import log_table_run

    columns, rows = wandb_rows(df)
    config = {"benchmark": df.attrs["benchmark"], "reference": df.attrs["reference"],
              "reference_source": df.attrs["reference_source"], "title": df.attrs["title"],
              "interval": "95% t-interval over seeds (<key>_lo, <key>_hi); MR: bootstrap over seeds",
              "reproduction": df.attrs.get("reproduction", ""), "rank_stability": " ".join(rank_stability_lines(df))}
    return log_table_run(logger, f"tables-{stem}", columns, rows,
                         {p.stem.removeprefix(f"{df.attrs['benchmark']}_"): p for p in images}, config)


def across_benchmarks(tables: dict[str, pd.DataFrame], out: str | Path | None = None) -> str:
    """Friedman test and Nemenyi critical difference of the methods' mean ranks by mean Δp over the
    benchmarks in `tables` (only methods with runs on every one); written to <out>/ranks.md."""
    scores = pd.DataFrame({b: df.loc[(df["name"] != "stl") & (df["seeds"] > 0)].set_index("name")["delta_p"]
                           for b, df in tables.items()}).T
    full = scores.dropna(axis=1)
    if len(tables) < 2 or full.shape[1] < 3:
        return (f"ranks across benchmarks: need >= 2 benchmarks and >= 3 methods with runs on all of them "
                f"(have {len(tables)} benchmark(s), {full.shape[1]} such method(s))")
    text = stats.friedman_nemenyi(full).text()
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "ranks.md").write_text(f"# Mean ranks by Δp across benchmarks ({', '.join(tables)})\n\n{text}\n")
    return text


def regenerate(benchmark: str, root: str | Path = "results/runs", out: str | Path = "results/tables", *,
               rule: str | None = None, reference: str = "config", include_tags: bool = False,
               plots: bool = True, quiet: bool = False, logger: dict[str, Any] | None = None,
               table: pd.DataFrame | None = None, stem: str | None = None) -> list[Path]:
    """Build, write and (optionally) plot one benchmark's table; with the wandb `logger` config also
    log the table and plots to a W&B table run. Returns the written paths."""
    df = table if table is not None else build_table(benchmark, root, rule=rule, reference=reference,
                                                     include_tags=include_tags)
    stem = stem or (benchmark if rule is None else f"{benchmark}_{rule}")
    paths = write_tables(df, out, stem)
    images: list[Path] = []
    if plots:
        from mtl.report.plots import benchmark_plots

        images = benchmark_plots(df, out)
        paths += images
    wandb_dir = log_table(df, images, logger, stem) if logger else None
    if not quiet:
        print(to_markdown(df))
        print("written:", ", ".join(map(str, paths)))
        if wandb_dir:
            print(f"W&B table run: {wandb_dir}")
    return paths


# --- per-run summaries (demo report) ---------------------------------------------------------------
def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=0) over seeds per (benchmark, method) of a mtl.report.runs.read_runs frame: Δp,
    Δm, wall time, every `task/metric` and per-task Δp; sorted by Δp, best first."""
    if df.empty:
        return df
    value_cols = ["delta_p", "delta_m", "wall_time_s", *metric_columns(df),
                  *[c for c in df.columns if c.startswith("delta_p/")]]
    g = df.groupby(["benchmark", "method"])[value_cols]
    out = g.mean()
    std = g.std(ddof=0).add_suffix("_std")
    out = out.join(std)
    out["seeds"] = df.groupby(["benchmark", "method"])["seed"].count()
    return out.reset_index().sort_values(["benchmark", "delta_p"], ascending=[True, False])


def delta_table_markdown(agg: pd.DataFrame) -> str:
    """A compact Markdown table: method, Δp ± std, Δm, seeds, per-metric means."""
    metric_cols = [c for c in metric_columns(agg) if not c.endswith("_std")]
    header = ["method", "Δp (%) ↑", "Δm (%) ↓", "seeds", *metric_cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in agg.iterrows():
        cells = [r["method"], f"{r['delta_p']:+.2f} ± {r['delta_p_std']:.2f}", f"{r['delta_m']:+.2f}",
                 str(int(r["seeds"])), *[f"{r[c]:.4g}" for c in metric_cols]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- command line (scripts/tables.py, scripts/plots.py) --------------------------------------------
TABLES_USAGE = """Regenerate the paper-layout tables (and plots) from results/runs/**/summary.json.

    python scripts/tables.py                       # every benchmark that has runs
    python scripts/tables.py nyuv2 qm9 [--rule last10] [--reference own] [--all-tags] [--no-plots]
    python scripts/tables.py nyuv2 logger=none     # no W&B table run (logger=wandb, offline, is the default)

Writes results/tables/<benchmark>.{md,tex,csv} (ours mean ± std over seeds, the paper's value and
ours − paper per metric, Δp, Δm, mean rank; paper methods without runs are marked "—") and, unless
--no-plots, results/tables/<benchmark>_{delta_p_per_task,curves,weights}.png. With the wandb logger
(the project default, configs/logger/wandb.yaml: offline unless logger.mode=online) each benchmark's
table (ours beside the paper's rows) and plots are also logged to a W&B run `tables-<benchmark>`.
"""


def logger_config(overrides: list[str]) -> dict[str, Any]:
    """The logger config composed with `overrides` (only logger=... / logger.<key>=...), checked."""
    from omegaconf import OmegaConf

    from mtl.run.loggers import check_logger
    from mtl.config.compose import compose

    bad = [o for o in overrides if not o.lstrip("+~").startswith("logger")]
    if bad:
        raise SystemExit(f"error: {' '.join(bad)}: tables take only logger overrides (logger=wandb|none, "
                         f"logger.mode=..., logger.project=...)")
    cfg = OmegaConf.to_container(compose(list(overrides)).logger, resolve=False)
    check_logger(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    import argparse

    from mtl.errors import MTLError

    ap = argparse.ArgumentParser(description=TABLES_USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benchmarks", nargs="*", help="default: every benchmark with runs under --root; "
                    "logger=... / logger.<key>=... arguments set the W&B logger")
    ap.add_argument("--root", default="results/runs")
    ap.add_argument("--out", default="results/tables")
    ap.add_argument("--rule", default=None, help="selection rule from summary 'reported' (default: the protocol's)")
    ap.add_argument("--reference", default="config", choices=["config", "own"],
                    help="Δ against the benchmark YAML's reference (paper STL row) or our own STL runs")
    ap.add_argument("--all-tags", action="store_true", help="also list tagged runs (sweep points) as rows")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_intermixed_args(argv)
    overrides = [a for a in args.benchmarks if "=" in a]
    benches = [a for a in args.benchmarks if "=" not in a] or benchmarks_with_runs(args.root)
    if not benches:
        print(f"no finished runs under {args.root}; nothing to tabulate")
        return 0
    try:
        logger = logger_config(overrides)
        tables = {}
        for b in benches:
            tables[b] = build_table(b, args.root, rule=args.rule, reference=args.reference, include_tags=args.all_tags)
            regenerate(b, args.root, args.out, plots=not args.no_plots, logger=logger, table=tables[b],
                       stem=None if args.rule is None else f"{b}_{args.rule}")
        if len(tables) > 1:
            print(across_benchmarks(tables, args.out))
    except MTLError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def plots_main(argv: list[str] | None = None) -> int:
    """scripts/plots.py: the figures of one or more benchmarks from their runs."""
    import argparse

    from mtl.report.plots import benchmark_plots

    ap = argparse.ArgumentParser(description="Figures of one or more benchmarks from their runs")
    ap.add_argument("benchmarks", nargs="+")
    ap.add_argument("--root", default="results/runs")
    ap.add_argument("--out", default="results/tables")
    ap.add_argument("--all-tags", action="store_true", help="include tagged runs (sweep points)")
    args = ap.parse_args(argv)
    for b in args.benchmarks:
        for p in benchmark_plots(build_table(b, args.root, include_tags=args.all_tags), args.out):
            print("written:", p)
    return 0
