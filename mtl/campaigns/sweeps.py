"""DB-MTL's β and α_k studies (Figs. 5 and 6): run the grid, then write a CSV and a box plot.

    python scripts/sweep.py beta  --bench synthetic [--seeds 0,1,2] [--points beta0.5,beta0.9]
    python scripts/sweep.py alpha --bench qm9 [--launcher submitit_local|slurm] [hydra overrides ...]
    python scripts/sweep.py beta --bench nyuv2 --no-run      # only collect finished runs

The grid is configs/experiment/sweep_<beta|alpha>.yaml; every point trains in its own run dir
(run.tag, e.g. db_mtl_beta0.5_sqrtk, db_mtl_alphamax), finished runs are skipped and interrupted ones
resume, so rerunning after a crash continues where it stopped. `--launcher local` (default) trains
the points one after the other in this process; any other launcher (configs/launcher/) sends the
grid as one Hydra multirun. Output: results/sweeps/<bench>_<beta|alpha>.csv (one row per point ×
seed: Δp, Δm, per-task Δp, run dir) and .png (Δp over seeds per point).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from mtl.report.plots import sweep_boxplot
from mtl.run.rundir import SUMMARY
from mtl.report.runs import read_runs
from mtl.config.compose import compose
from mtl.campaigns.workflows import one_line_errors, Group, execute, load_experiment, num_tasks, report_failures, sweep_params

PLACEHOLDER_INV_T = "inv_T"
TITLES = {"beta": "DB-MTL β (β/√k: _sqrtk)", "alpha": "DB-MTL α_k"}


def point_overrides(exp, benchmark: str, overrides: list[str]) -> list[str]:
    """Fill `inv_T` placeholders of the grid with 1/T of this benchmark."""
    out = []
    points = exp.get("sweep_points") or {}
    inv_t = None
    for name, params in points.items():
        for key, value in params.items():
            if value == PLACEHOLDER_INV_T:
                inv_t = inv_t or 1.0 / num_tasks(benchmark, overrides)
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
                        title=f"{benchmark}: {TITLES[study]} ({len(seeds)} seed(s))")
    return df, [csv, png], report_failures(failures)


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
        summary = df.groupby("point", sort=False)["delta_p"].agg(["mean", "std", "count"])
        print(summary.to_string(float_format=lambda x: f"{x:+.2f}"))
        print("written:", ", ".join(map(str, paths)))
    return rc

