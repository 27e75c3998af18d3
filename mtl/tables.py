"""Paper-layout tables from run files: our mean ± std over seeds per metric, Δp, Δm and mean rank,
with the paper's value and the difference beside each of ours.

Δp/Δm are recomputed per seed from the selected metrics in summary.json against the benchmark's
`reference` (the paper's STL row for paper benchmarks, see configs/benchmark/*.yaml) or, with
reference="own", against the mean of our own STL runs; the mean over seeds is reported.
Rows: the paper's methods in paper order (a method without runs is shown as missing, "—"), then
our other methods. STL runs (`stl_<i>` folders, one per task) are merged into one STL row.
Mean rank (MR): per metric, the rank of each method among the MTL rows that have a value (1 = best,
ties averaged, STL excluded), averaged over metrics; "MR paper" ranks the paper's rows the same way.
Spread over seeds is the population std (ddof=0), as mtl/report.py.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.benchmark import TaskSpec
from mtl.delta import delta_m, delta_p, delta_p_per_task
from mtl.paper import PaperRows, display_name, load_paper
from mtl.report import read_summary

MISSING = "—"
Metrics = dict[str, dict[str, float]]


@dataclass
class BenchmarkInfo:
    name: str
    tasks: list[TaskSpec]
    reference: Metrics
    reference_m: Metrics
    reference_source: str

    @property
    def keys(self) -> list[str]:
        return [f"{t.name}/{m.name}" for t in self.tasks for m in t.metrics]

    def higher_is_better(self, key: str) -> bool:
        task, metric = key.split("/", 1)
        return next(m.higher_is_better for t in self.tasks if t.name == task for m in t.metrics if m.name == metric)


def benchmark_info(benchmark: str, overrides: list[str] | tuple[str, ...] = ()) -> BenchmarkInfo:
    """Tasks, directions and STL reference from the benchmark registry (no data needed)."""
    from mtl.benchmarks import spec

    s = spec(benchmark, [o for o in overrides if not o.startswith("benchmark=")])
    return BenchmarkInfo(s.name, list(s.tasks), s.reference, s.reference_m, s.reference_source)


# ---------------------------------------------------------------------------------------------
@dataclass
class RunSet:
    """Per row name: seed -> metrics (task -> metric -> value); plus where each came from."""

    seeds: dict[str, dict[int, Metrics]] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)


_STL_DIR = re.compile(r"^stl_(\d+)$")


def _metrics_of(summary: dict[str, Any], rule: str | None) -> Metrics:
    if rule is None or rule == summary.get("selection"):
        return summary["metrics"]
    reported = summary.get("reported") or {}
    if rule not in reported:
        raise KeyError(f"run {summary.get('method')} seed {summary.get('seed')} has no selection rule {rule!r} "
                       f"(has {sorted(reported)})")
    return reported[rule]["metrics"]


def collect_runs(root: str | Path, benchmark: str, *, rule: str | None = None, include_tags: bool = False,
                 only: list[str] | None = None) -> RunSet:
    """Finished runs under <root>/<benchmark>/<method><tag>/seed<s>/summary.json.

    Untagged methods are rows named by the method; `stl_<i>` folders (task i) merge into row "stl"
    (task i's metrics from run stl_<i>, per seed); other tagged folders (sweeps) are rows only with
    `include_tags` or when named in `only`."""
    out = RunSet()
    stl_parts: dict[int, dict[str, dict[str, float]]] = {}
    for path in sorted(Path(root, benchmark).glob("*/seed*/summary.json")):
        folder = path.parent.parent.name
        s = read_summary(path)
        if s is None:  # damaged: named on stderr, the other runs still make the table
            continue
        seed = int(s["seed"])
        metrics = _metrics_of(s, rule)
        m = _STL_DIR.match(folder)
        if m and s.get("method") == "stl":
            i = int(m.group(1))
            task = list(metrics)[i]  # metrics keep the benchmark's task order (json preserves it)
            stl_parts.setdefault(seed, {})[task] = metrics[task]
            out.paths.setdefault("stl", []).append(str(path.parent))
            continue
        tagged = folder != s.get("method", folder)
        if only is not None and folder not in only:
            continue
        if tagged and not include_tags and only is None:
            continue
        out.seeds.setdefault(folder, {})[seed] = metrics
        out.paths.setdefault(folder, []).append(str(path.parent))
    if stl_parts and (only is None or "stl" in only):
        out.seeds["stl"] = dict(sorted(stl_parts.items()))
    return out


# ---------------------------------------------------------------------------------------------
def _stats(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=0))


def _flat(metrics: Metrics, key: str) -> float:
    task, metric = key.split("/", 1)
    return float(metrics.get(task, {}).get(metric, math.nan))


def _complete(metrics: Metrics, info: BenchmarkInfo) -> bool:
    return all(not math.isnan(_flat(metrics, k)) for k in info.keys)


def mean_ranks(values: pd.DataFrame, info: BenchmarkInfo) -> pd.Series:
    """Mean over metrics of each row's rank (1 = best, ties averaged); NaN cells are not ranked."""
    ranks = pd.DataFrame(index=values.index)
    for key in info.keys:
        if key in values:
            ranks[key] = values[key].rank(ascending=not info.higher_is_better(key), method="average")
    return ranks.mean(axis=1, skipna=True)


def build_table(benchmark: str, root: str | Path = "results/runs", *, rule: str | None = None,
                reference: str = "config", include_tags: bool = False, only: list[str] | None = None,
                info: BenchmarkInfo | None = None, paper: PaperRows | None | bool = True) -> pd.DataFrame:
    """One row per method (paper order first): ours (mean, std), paper value and difference per
    metric, Δp, Δm, MR; `status` is ok | missing (no runs) | partial (STL with tasks missing)."""
    info = info or benchmark_info(benchmark)
    runs = collect_runs(root, benchmark, rule=rule, include_tags=include_tags, only=only)
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
    for name in names + extras:
        row: dict[str, Any] = {"method": display_name(name), "name": name}
        per_seed = runs.seeds.get(name, {})
        row["seeds"] = len(per_seed)
        row["status"] = "ok" if per_seed else "missing"
        for key in info.keys:
            row[key], row[f"{key}_std"] = _stats([_flat(m, key) for m in per_seed.values()])
        complete = {s: m for s, m in per_seed.items() if _complete(m, info)}
        if per_seed and len(complete) < len(per_seed):
            row["status"] = "partial"
        dps = [delta_p(m, ref, info.tasks) for m in complete.values()]
        dms = [delta_m(m, ref_m, info.tasks) for m in complete.values()]
        row["delta_p"], row["delta_p_std"] = _stats(dps)
        row["delta_m"], row["delta_m_std"] = _stats(dms)
        for t in info.tasks:
            row[f"delta_p/{t.name}"] = _stats([delta_p_per_task(m, ref, info.tasks)[t.name]
                                              for m in complete.values()])[0]
        if paper_rows and "avg" in paper_rows.table.extra:
            row["avg"], row["avg_std"] = _stats([float(np.mean([_flat(m, k) for k in info.keys]))
                                                 for m in complete.values()])
        if paper_rows:
            prow = paper_rows.rows.get(name, {})
            for key in [*info.keys, "delta_p", *paper_rows.table.extra]:
                row[f"{key}_paper"] = prow.get(key, math.nan)
                row[f"{key}_diff"] = row.get(key, math.nan) - row[f"{key}_paper"]
            row["delta_p_paper_pm"] = prow.get("delta_p_pm", math.nan)
        row["runs"] = ";".join(runs.paths.get(name, []))
        rows.append(row)
    df = pd.DataFrame(rows)
    is_extra = df["name"].isin(extras)  # our methods outside the paper table: best Δp first
    df = pd.concat([df[~is_extra], df[is_extra].sort_values("delta_p", ascending=False)], ignore_index=True)
    mtl_rows = df["name"] != "stl"
    df["mr"] = math.nan
    df.loc[mtl_rows, "mr"] = mean_ranks(df.loc[mtl_rows, info.keys], info)
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
                    has_paper=bool(paper_rows), extra=list(paper_rows.table.extra) if paper_rows else [])
    return df


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


def _cell(row: pd.Series, key: str, df: pd.DataFrame, *, latex: bool = False) -> str:
    dec = df.attrs["decimals"]
    signed = key in ("delta_p", "delta_m")
    ours = _fmt(row.get(key, math.nan), key, dec, signed)
    std = row.get(f"{key}_std", math.nan)
    if ours != MISSING and isinstance(std, float) and not math.isnan(std) and row["seeds"] > 1:
        ours = (f"${ours}_{{\\pm {_fmt(std, key, dec)}}}$" if latex else f"{ours} ± {_fmt(std, key, dec)}")
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


def to_markdown(df: pd.DataFrame) -> str:
    cols = _columns(df)
    lines = [f"### {df.attrs['title']}", ""]
    if df.attrs["has_paper"]:
        lines.append("Cells: ours mean ± std over seeds (paper; ours − paper). "
                     f"{MISSING} = no finished run.")
    lines.append(f"Δp/Δm against: {df.attrs['reference_source']}. MR = mean rank over metrics "
                 "among the MTL rows with runs" + (" (paper: among the paper's rows)." if df.attrs["has_paper"] else "."))
    lines.append("")
    header = ["method", "seeds", *[h for _, h in cols]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in df.iterrows():
        cells = [row["method"], str(int(row["seeds"])) if row["seeds"] else MISSING,
                 *[_cell(row, k, df) for k, _ in cols]]
        lines.append("| " + " | ".join(cells) + " |")
    missing = df.loc[df["status"] == "missing", "method"].tolist()
    if missing:
        lines += ["", f"No runs yet ({len(missing)}): {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%")
            .replace("Δp", "$\\Delta_p$").replace("Δm", "$\\Delta_m$").replace("↑", "$\\uparrow$")
            .replace("↓", "$\\downarrow$").replace("±", "$\\pm$").replace("−", "-"))


def to_latex(df: pd.DataFrame) -> str:
    cols = _columns(df)
    head = ["Method", "Seeds", *[_tex_escape(h) for _, h in cols]]
    lines = ["% generated by scripts/tables.py from results/runs; cells: ours (paper; ours - paper)",
             "\\begin{table}[t]", "\\centering", "\\resizebox{\\linewidth}{!}{%",
             "\\begin{tabular}{l" + "c" * (len(head) - 1) + "}", "\\toprule", " & ".join(head) + " \\\\",
             "\\midrule"]
    for _, row in df.iterrows():
        cells = [_tex_escape(row["method"]), str(int(row["seeds"])) if row["seeds"] else "--",
                 *[_cell(row, k, df, latex=True) for k, _ in cols]]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", f"\\caption{{{_tex_escape(df.attrs['title'])}}}", "\\end{table}"]
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


def regenerate(benchmark: str, root: str | Path = "results/runs", out: str | Path = "results/tables", *,
               rule: str | None = None, reference: str = "config", include_tags: bool = False,
               plots: bool = True, quiet: bool = False) -> list[Path]:
    """Build, write and (optionally) plot one benchmark's table; returns the written paths."""
    df = build_table(benchmark, root, rule=rule, reference=reference, include_tags=include_tags)
    paths = write_tables(df, out, benchmark if rule is None else f"{benchmark}_{rule}")
    if plots:
        from mtl.plots import benchmark_plots

        paths += benchmark_plots(df, out)
    if not quiet:
        print(to_markdown(df))
        print("written:", ", ".join(map(str, paths)))
    return paths
