"""DB-MTL's β and α_k studies (Figs. 5 and 6): run the grid, then write a CSV and a box plot.

    python scripts/sweep.py beta  --bench synthetic [--seeds 0,1,2] [--points beta0.5,beta0.9]
    python scripts/sweep.py alpha --bench qm9 [--launcher submitit_local|slurm] [hydra overrides ...]
    python scripts/sweep.py beta --bench nyuv2 --no-run      # only collect finished runs

The grid is configs/experiment/sweep_<beta|alpha>.yaml; every point trains in its own run dir
(run.tag, e.g. db_mtl_beta0.5_sqrtk, db_mtl_alphamax), finished runs are skipped and interrupted ones
resume, so rerunning after a crash continues where it stopped. `--launcher local` (default) trains
the points one after the other in this process; any other launcher (configs/launcher/) sends the
grid as one Hydra multirun. Output: results/sweeps/<bench>_<beta|alpha>.csv (one row per point ×
seed: Δp, Δm, per-task Δp, run dir) and .png (Δp over seeds per point), and <bench>_<study>_summary.{md,csv}:
per point the mean Δp with its 95 % t-interval over seeds (one seed: no interval), the probability
that it is the best point under a bootstrap over seeds, and the paired comparison by seed against
the experiment's default point (β 0.9, α max), Holm-corrected over the points (mtl.scoring.stats).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from mtl.report.plots import sweep_boxplot
from mtl.scoring import stats
from mtl.run.rundir import SUMMARY
from mtl.report.runs import read_runs
from mtl.benchmarks import num_tasks
from mtl.config.compose import compose
from mtl.campaigns.workflows import one_line_errors, Group, execute, load_experiment, report_failures, sweep_params

PLACEHOLDER_INV_T = "inv_T"
TITLES = {"beta": "DB-MTL β", "alpha": "DB-MTL α_k"}


def point_overrides(exp, benchmark: str, overrides: list[str]) -> list[str]:
    """Fill `inv_T` placeholders of the grid with 1/T of this benchmark."""
    out = []
    points = exp.get("sweep_points") or {}
    inv_t = None
    for name, params in points.items():
        for key, value in params.items():
            if value == PLACEHOLDER_INV_T:
                inv_t = inv_t or 1.0 / num_tasks(compose([f"benchmark={benchmark}", *overrides]).benchmark)
                out.append(f"sweep_points.{name}.{key}={inv_t!r}")
    return out


def collect(study: str, benchmark: str, points: list[str], seeds: list[int], overrides: list[str]) -> pd.DataFrame:
    """One row per (point, seed) with the point's hyperparameters and the run's Δp (NaN if unfinished
    or damaged: status missing | damaged | ok)."""
    exp_name = f"sweep_{study}"
    rows = []
    runs = None
    for p in points:
        cfg = compose([f"experiment={exp_name}", f"benchmark={benchmark}", f"sweep_point={p}", "seed=0", *overrides])
        params = {k: cfg.method[k] for k in cfg.sweep_points[p]}
        base = Path(cfg.run.dir).parent
        if runs is None:  # every point lives under the same <root>/<benchmark>
            runs = read_runs(base.parent.parent, base.parent.name, required=("seed", "metrics", "delta_p", "delta_m"),
                             config=False).set_index("path", drop=False)
        for s in seeds:
            run_dir = base / f"seed{s}"
            row = {"point": p, **params, "seed": s, "run_dir": str(run_dir)}
            if str(run_dir) in runs.index:
                r = runs.loc[str(run_dir)]
                row.update(status="ok", delta_p=r["delta_p"], delta_m=r["delta_m"],
                           **{c: r[c] for c in runs.columns if c.startswith("delta_p/") and pd.notna(r[c])})
            else:
                row.update(status="damaged" if (run_dir / SUMMARY).exists() else "missing", delta_p=math.nan,
                           delta_m=math.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def sweep(study: str, benchmark: str, *, seeds: list[int] | None = None, points: list[str] | None = None,
          launcher: str = "local", overrides: list[str] = (), out: str | Path = "results/sweeps",
          run: bool = True, dry_run: bool = False) -> tuple[pd.DataFrame, list[Path], int]:
    exp_name = f"sweep_{study}"
    exp = load_experiment(exp_name)
    params = sweep_params(exp)
    points = points or params["sweep_point"]
    unknown = [p for p in points if p not in exp.sweep_points]
    if unknown:
        raise KeyError(f"{exp_name}: unknown sweep point(s) {unknown}; the grid has {list(exp.sweep_points)}")
    seeds = seeds if seeds is not None else [int(s) for s in params["seed"]]
    overrides = [*point_overrides(exp, benchmark, list(overrides)), *overrides]
    failures = []
    if run or dry_run:
        group = Group([f"experiment={exp_name}", f"benchmark={benchmark}"],
                      {"sweep_point": points, "seed": [str(s) for s in seeds]})
        failures = execute([group], launcher, extra=overrides, dry_run=dry_run)
    if dry_run:
        return pd.DataFrame(), [], 0
    df = collect(study, benchmark, points, seeds, overrides)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    csv = outdir / f"{benchmark}_{study}.csv"
    df.to_csv(csv, index=False)
    png = sweep_boxplot(df, outdir / f"{benchmark}_{study}.png", order=points,
                        title=f"{benchmark}: {TITLES[study]}")
    summ = summary(df, points, default=str(exp.get("sweep_point", "")))
    md = outdir / f"{benchmark}_{study}_summary.md"
    md.write_text(f"# {benchmark}: {TITLES[study]}, Δp over seeds\n\n{summary_markdown(summ)}\n")
    summ.to_csv(md.with_suffix(".csv"), index=False)
    return df, [csv, png, md, md.with_suffix(".csv")], report_failures(failures)


def summary(df: pd.DataFrame, points: list[str], default: str = "") -> pd.DataFrame:
    """Per point: seeds, mean Δp, 95 % t-interval, P(best point) under a bootstrap over seeds and,
    against the `default` point (when it has runs), the paired difference, Holm p and verdict."""
    ok = df[df["status"] == "ok"]
    per = {p: dict(zip(g["seed"].astype(int), g["delta_p"].astype(float))) for p, g in ok.groupby("point")}
    rows = []
    for p in points:
        ci = stats.t_interval(per.get(p, {}).values())
        rows.append({"point": p, "seeds": ci.n, "delta_p": ci.mean, "delta_p_lo": ci.low, "delta_p_hi": ci.high,
                     "interval": ci.text(2, True)})
    out = pd.DataFrame(rows)
    probs = stats.bootstrap_ranks({p: v for p, v in per.items() if v}, n_boot=10000)
    out["p_best"] = out["point"].map(dict(zip(probs["method"], probs["p_first"])))
    out["vs_default"] = out["p_holm"] = out["verdict"] = None
    if default in per and len(per[default]) >= 1:
        others = {p: per[p] for p in points if p != default and p in per}
        cmp = stats.compare_to_baselines(per[default], others).set_index("baseline") if others else None
        for i, p in enumerate(out["point"]):
            if cmp is not None and p in cmp.index:
                r = cmp.loc[p]  # default − point: flip the sign to read point − default
                d = stats.paired_comparison(per[p], per[default])
                out.loc[i, "vs_default"] = d.interval.text(2, True) if d.n else "—"
                out.loc[i, "p_holm"] = r["p_holm"]
                word = stats.verdict_word(d.interval.mean, r["p_holm"], d.n)
                out.loc[i, "verdict"] = f"{word} than {default}" if word in ("better", "worse") else word
            elif p == default:
                out.loc[i, "verdict"] = "(default)"
    out.attrs["default"] = default
    return out


def summary_markdown(summ: pd.DataFrame) -> str:
    default = summ.attrs.get("default", "")
    lines = [f"Δp mean [95 % t-interval over seeds]; P(best): bootstrap over seeds; vs {default or 'default'}: "
             "paired by seed (point − default), Holm-corrected over the points.", "",
             f"| point | seeds | Δp (%) ↑ | P(best) | vs {default or 'default'} | Holm p | verdict |", "|---|---|---|---|---|---|---|"]
    for r in summ.itertuples():
        pb = "—" if r.p_best != r.p_best or r.p_best is None else f"{r.p_best:.2f}"
        ph = "—" if r.p_holm is None or r.p_holm != r.p_holm else f"{r.p_holm:.3g}"
        lines.append(f"| {r.point} | {r.seeds} | {r.interval} | {pb} | {r.vs_default or '—'} | {ph} | {r.verdict or '—'} |")
    if (summ["seeds"] == 1).any():
        lines += ["", "Points with one seed keep their one value in every bootstrap: their P(best) is not a "
                  "probability over seeds, and they have no interval and no test."]
    return "\n".join(lines)


@one_line_errors
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", choices=["beta", "alpha"])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--seeds", default=None, help="comma list; default: the experiment file's")
    ap.add_argument("--points", default=None, help="comma list of grid points; default: all")
    ap.add_argument("--launcher", default="local", help="local | a configs/launcher/<name> Hydra launcher")
    ap.add_argument("--out", default="results/sweeps")
    ap.add_argument("--no-run", action="store_true", help="only collect finished runs into CSV + plot")
    ap.add_argument("--dry-run", action="store_true", help="print the Hydra multirun command and exit")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.epochs=2 logger=none")
    args = ap.parse_intermixed_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    points = args.points.split(",") if args.points else None
    df, paths, rc = sweep(args.study, args.bench, seeds=seeds, points=points, launcher=args.launcher,
                          overrides=args.overrides, out=args.out, run=not args.no_run, dry_run=args.dry_run)
    if not args.dry_run:
        print(summary_markdown(summary(df, list(dict.fromkeys(df["point"])),
                                       default=str(load_experiment(f"sweep_{args.study}").get("sweep_point", "")))))
        print("written:", ", ".join(map(str, paths)))
    return rc

