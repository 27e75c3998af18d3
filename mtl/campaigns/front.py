"""The scalarization front (issue #21, item 6): fixed-weight runs of the weighted sum over a grid of
weights, and every method's per-task results drawn against it with their seed intervals.

    python scripts/front.py --bench toy --seeds 0,1,2 --front-seeds 0 [--methods ew,mgda,pcgrad,cagrad,db_mtl]
    python scripts/front.py --bench synthetic --points 5 --seeds 0,1,2 [hydra overrides ...]
    python scripts/front.py --bench cityscapes --no-run          # only collect finished runs

Why: Xin et al. (NeurIPS 2022) find that balancing methods rarely beat the Pareto front a sweep of
fixed weights reaches; a method's point is informative only next to that front. Each weight vector w
trains `method=fixed method.weights=[w]` in its own run dir (run.tag `_w<w1>-<w2>...`), so finished
runs are skipped and interrupted ones resume like every workflow (mtl/campaigns/workflows.py).

The grid (`weight_grid`): the weights sum to T (the centre is EW, weight 1 per task).
- two tasks: w = (T·a, T·(1−a)) for `points` values of a evenly spaced in [0, 1] (default 11);
- more tasks: the simplex lattice {k/n : k_t integers summing to n} with the largest n whose lattice
  has at most `max_points` points (default 30; T=3: n=6, 28 points); where even n=2 has too many
  (T >= 8), the centre and the T vertices' midpoints with the centre, then Dirichlet(1) draws
  (numpy seed 0) up to `max_points`.
Per-task results are the per-task Δp of the run's selected epoch (`delta_p/<task>`, higher is
better for every task), so one plot reads the same way on every benchmark.

Output in --out (default results/front): <bench>_front.csv (one row per weight: weights, per-task
mean over seeds, n seeds, `pareto` = not dominated by another weight's mean), <bench>_methods.csv
(one row per method folder with runs: per-task mean and 95 % t-interval, n seeds,
`dominated_by` = a fixed-weight point whose mean is at least as good on every task, empty when
none is; `beyond_front` = true then: the method reaches what no fixed weight of the grid reached) and <bench>_front.png.
"""
from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.benchmarks import num_tasks
from mtl.campaigns.workflows import Group, execute, report_failures
from mtl.config.compose import compose
from mtl.report.runs import read_runs
from mtl.scoring.stats import t_interval

METHOD = "fixed"
TAG_PREFIX = "_w"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def weight_grid(t: int, points: int = 11, max_points: int = 30, seed: int = 0) -> list[tuple[float, ...]]:
    """The fixed weight vectors of the front (see the module docstring); each sums to `t`."""
    if t < 2:
        raise ValueError(f"a front needs at least 2 tasks, got {t}")
    if t == 2:
        if points < 2:
            raise ValueError(f"--points must be >= 2, got {points}")
        grid = [(2 * a, 2 * (1 - a)) for a in np.linspace(0.0, 1.0, points)]
    else:
        n = 0
        while math.comb(n + 1 + t - 1, t - 1) <= max_points:
            n += 1
        if n >= 2:
            grid = [tuple(t * k / n for k in ks) for ks in itertools.product(range(n + 1), repeat=t) if sum(ks) == n]
        else:
            centre = np.full(t, 1.0 / t)
            grid = [tuple(t * centre)] + [tuple(t * (centre + np.eye(t)[i]) / 2) for i in range(t)]
            rng = np.random.default_rng(seed)
            while len(grid) < max_points:
                grid.append(tuple(t * rng.dirichlet(np.ones(t))))
            grid = grid[:max_points]
    return [tuple(float(_fmt(v)) for v in w) for w in grid]


def tag(weights) -> str:
    return TAG_PREFIX + "-".join(_fmt(v) for v in weights)


def groups(benchmark: str, weights: list[tuple[float, ...]], seeds: list[int], methods: list[str],
           front_seeds: list[int] | None = None) -> list[Group]:
    front_values = [str(s) for s in (seeds if front_seeds is None else front_seeds)]
    out = [Group([f"benchmark={benchmark}", f"method={METHOD}", f"method.weights=[{','.join(_fmt(v) for v in w)}]",
                  f"run.tag={tag(w)}"], {"seed": front_values}) for w in weights]
    if methods:
        out.append(Group([f"benchmark={benchmark}"], {"method": list(methods), "seed": [str(s) for s in seeds]}))
    return out


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """values [n, k], higher is better: True where no other row is >= everywhere and > somewhere."""
    keep = np.ones(len(values), dtype=bool)
    for i, v in enumerate(values):
        others = np.delete(values, i, axis=0)
        keep[i] = not bool(np.any(np.all(others >= v, axis=1) & np.any(others > v, axis=1)))
    return keep


def collect(runs: pd.DataFrame, tasks: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(front, methods): per folder (method + tag) the per-task Δp over seeds (see the docstring)."""
    cols = [f"delta_p/{t}" for t in tasks]
    runs = runs.dropna(subset=cols)
    front_rows, method_rows = [], []
    for folder, g in runs.groupby("method", sort=True):
        trained = g["trained"].iloc[0]
        if trained == "stl":
            continue
        is_front = trained == METHOD and str(g["tag"].iloc[0]).startswith(TAG_PREFIX)
        row = {"method": folder, "seeds": len(g), "seed_list": ",".join(str(s) for s in sorted(g["seed"]))}
        for t, c in zip(tasks, cols):
            iv = t_interval(g[c].to_numpy(dtype=float))
            row[t] = iv.mean
            if not is_front:
                row[f"{t}_low"], row[f"{t}_high"] = iv.low, iv.high
        if is_front:
            w = [float(v) for v in str(g["tag"].iloc[0])[len(TAG_PREFIX):].split("-")]
            row.update({f"w_{t}": v for t, v in zip(tasks, w)})
            front_rows.append(row)
        else:
            method_rows.append(row)
    front = pd.DataFrame(front_rows, columns=["method", "seeds", "seed_list", *(f"w_{t}" for t in tasks), *tasks])
    if not front.empty:
        front = front.sort_values([f"w_{t}" for t in tasks], ascending=False).reset_index(drop=True)
        front["pareto"] = pareto_mask(front[tasks].to_numpy(dtype=float))
    methods = pd.DataFrame(method_rows)
    if not methods.empty:
        pts = front[tasks].to_numpy(dtype=float) if not front.empty else np.zeros((0, len(tasks)))
        dominated = []
        for _, r in methods.iterrows():
            v = r[tasks].to_numpy(dtype=float)
            # at least as good on every task (EW is matched by w = 1: equal up to the rounding of a mean)
            hit = np.all((pts >= v) | np.isclose(pts, v, rtol=1e-9, atol=1e-12), axis=1)
            dominated.append(front["method"][hit].iloc[0] if hit.any() else "")
        methods["dominated_by"] = dominated
        methods["beyond_front"] = [d == "" and not front.empty for d in dominated]
    return front, methods


def front(benchmark: str, *, seeds: list[int], front_seeds: list[int] | None = None, points: int = 11, max_points: int = 30, methods: list[str] = (),
          launcher: str = "local", overrides: list[str] = (), out: str | Path = "results/front", run: bool = True,
          dry_run: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[Path], int]:
    t = num_tasks(compose([f"benchmark={benchmark}", *(o for o in overrides if o.startswith("benchmark."))]).benchmark)
    weights = weight_grid(t, points, max_points)
    failures = []
    if run or dry_run:
        failures = execute(groups(benchmark, weights, seeds, list(methods), front_seeds), launcher, extra=list(overrides),
                           dry_run=dry_run)
    if dry_run:
        return pd.DataFrame(), pd.DataFrame(), [], 0
    cfg = compose([f"benchmark={benchmark}", *overrides])
    from mtl.benchmarks import from_config

    tasks = [task.name for task in from_config(cfg.benchmark).tasks]
    runs = read_runs(cfg.run.root, cfg.benchmark.name, required=("seed", "metrics", "delta_p"), config=False)
    if not runs.empty:
        fixed = (runs["trained"] == METHOD) & runs["tag"].astype(str).str.startswith(TAG_PREFIX)
        runs = runs[(fixed & runs["seed"].isin(seeds if front_seeds is None else front_seeds))
                    | (~fixed & runs["seed"].isin(seeds))]
    fr, ms = collect(runs, tasks) if not runs.empty else (pd.DataFrame(), pd.DataFrame())
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [outdir / f"{benchmark}_front.csv", outdir / f"{benchmark}_methods.csv"]
    fr.to_csv(paths[0], index=False)
    ms.to_csv(paths[1], index=False)
    if not fr.empty:
        from mtl.report.plots import front_plot

        paths.append(front_plot(fr, ms, tasks, outdir / f"{benchmark}_front.png", benchmark=benchmark))
    return fr, ms, paths, report_failures(failures)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--seeds", default="0,1,2", help="comma list (default 0,1,2)")
    ap.add_argument("--front-seeds", default=None, help="seeds of the fixed-weight runs (default: --seeds; "
                    "one is enough where training is deterministic, as on the toy)")
    ap.add_argument("--points", type=int, default=11, help="two tasks: weights on the grid (default 11)")
    ap.add_argument("--max-points", type=int, default=30, help="more tasks: at most this many weights (default 30)")
    ap.add_argument("--methods", default="", help="comma list of methods to train too (default: none; every "
                    "method with runs in the run store is drawn)")
    ap.add_argument("--launcher", default="local", help="local | a configs/launcher/<name> Hydra launcher")
    ap.add_argument("--out", default="results/front")
    ap.add_argument("--no-run", action="store_true", help="only collect finished runs into CSV + plot")
    ap.add_argument("--dry-run", action="store_true", help="print the Hydra multirun commands and exit")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.epochs=2 logger=none")
    args = ap.parse_intermixed_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    front_seeds = [int(s) for s in args.front_seeds.split(",")] if args.front_seeds else None
    fr, ms, paths, rc = front(args.bench, seeds=seeds, front_seeds=front_seeds, points=args.points, max_points=args.max_points,
                              methods=methods, launcher=args.launcher, overrides=args.overrides, out=args.out,
                              run=not args.no_run, dry_run=args.dry_run)
    if not args.dry_run:
        if not ms.empty:
            shown = ms.drop(columns=[c for c in ms.columns if c.endswith(("_low", "_high")) or c == "seed_list"])
            print(shown.to_string(index=False, float_format=lambda x: f"{x:+.2f}"))
            beyond = ms.loc[ms["beyond_front"], "method"].tolist()
            print(f"beyond the fixed-weight front ({len(fr)} weights): {', '.join(beyond) or 'none'}")
        print("written:", ", ".join(map(str, paths)))
    return rc
