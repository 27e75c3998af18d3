"""Is the demo's ranking of methods stable? The demo's methods are trained through the demo's own code
path at the demo's budget for two seeds, and at twice the budget (2x epochs) for the first seed.
Stable means: the same best and the same worst method for both seeds, and the same order of all
methods at twice the budget.

    python scripts/demo_stability.py [--benchmark qm9_small] [--methods ...] [--seeds 0 1] [--out results/demo]

Runs go to results/runs/demo_stability/{1x,2x}/ (finished runs are skipped). Writes
<out>/<name>.csv (budget, epochs, seed, method, delta_p, rank; rank 1 = best) and <out>/<name>.md
(the checks, the command, wall times and the machine's load); --name defaults to ranking_stability.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from mtl.campaigns import demo
from mtl.report.runs import read_runs
from mtl.config.compose import compose

# the four rows this check was measured with (results/demo/ranking_stability.md), not the demo's current list
STABILITY_METHODS = ["db_mtl", "uw", "ew", "rlw"]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rankings(root: Path, benchmark: str, budgets: dict[str, int], methods: list[str]) -> pd.DataFrame:
    frames = []
    for budget, epochs in budgets.items():
        df = read_runs(root / budget, benchmark, required=("seed", "metrics", "delta_p", "delta_m"), config=False)
        df = df[df["method"].isin(methods)][["seed", "method", "delta_p"]].copy()
        df.insert(0, "epochs", epochs)
        df.insert(0, "budget", budget)
        df["rank"] = df.groupby("seed")["delta_p"].rank(ascending=False, method="min").astype(int)
        frames.append(df)
    return pd.concat(frames).sort_values(["budget", "seed", "rank"]).reset_index(drop=True)


def checks(df: pd.DataFrame, seeds: list[int]) -> list[tuple[str, bool, str]]:
    """[(check, passed, detail)] on the ranking table."""
    def order(budget, seed):
        return list(df[(df["budget"] == budget) & (df["seed"] == seed)].sort_values("rank")["method"])

    orders = {s: order("1x", s) for s in seeds}
    out = []
    for which, pick in (("best", 0), ("worst", -1)):
        names = {s: o[pick] for s, o in orders.items()}
        out.append((f"same {which} method for seeds {seeds}", len(set(names.values())) == 1,
                    ", ".join(f"seed {s}: {n}" for s, n in names.items())))
    o1, o2 = orders[seeds[0]], order("2x", seeds[0])
    out.append((f"same order with twice the budget (seed {seeds[0]})", o1 == o2,
                f"1x: {' > '.join(o1)}; 2x: {' > '.join(o2)}"))
    return out


def closest_pairs(df: pd.DataFrame) -> list[str]:
    """Per (budget, seed): the two neighbouring methods with the smallest Δp gap (how close a swap is)."""
    out = []
    for (budget, seed), g in df.groupby(["budget", "seed"]):
        g = g.sort_values("rank")
        gaps = [(a.delta_p - b.delta_p, a.method, b.method) for a, b in zip(g.itertuples(), g.iloc[1:].itertuples())]
        if gaps:
            gap, a, b = min(gaps)
            out.append(f"{budget} seed {seed}: {a} - {b} {gap:.1f} points")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", default="qm9_small")
    ap.add_argument("--methods", nargs="+", default=STABILITY_METHODS)
    ap.add_argument("--seeds", nargs=2, type=int, default=[0, 1])
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--root", default="results/runs/demo_stability")
    ap.add_argument("--out", default="results/demo")
    ap.add_argument("--name", default="ranking_stability", help="file stem of the outputs in --out")
    args = ap.parse_args(argv)
    command = " ".join(["python scripts/demo_stability.py", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()
    epochs = int(compose([f"benchmark={args.benchmark}"]).benchmark.protocol.epochs)
    budgets = {"1x": epochs, "2x": 2 * epochs}
    root, out = Path(args.root), Path(args.out)
    log_dir = root / "logs"  # next to the runs (ignored by git)
    notes = [f"load average (1/5/15 min) at start: {load()}"]
    t0 = time.perf_counter()
    wall = demo.train_all(args.benchmark, args.methods, args.seeds, root=str(root / "1x"), jobs=args.jobs,
                          logs=log_dir / "1x")
    notes.append(f"1x ({epochs} epochs, seeds {args.seeds}): {wall:.0f} s wall; load after: {load()}")
    wall = demo.train_all(args.benchmark, args.methods, args.seeds[:1], root=str(root / "2x"), jobs=args.jobs,
                          logs=log_dir / "2x", overrides=[f"trainer.epochs={2 * epochs}"])
    notes.append(f"2x ({2 * epochs} epochs, seed {args.seeds[0]}): {wall:.0f} s wall; load after: {load()}")
    df = rankings(root, args.benchmark, budgets, args.methods)
    results = checks(df, args.seeds)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{args.name}.csv", index=False, float_format="%.4f")
    stable = all(ok for _, ok, _ in results)
    lines = [f"# Ranking stability of `make demo` ({args.benchmark})", "",
             f"Verdict: **{'stable' if stable else 'NOT stable'}**", "",
             *[f"- {'PASS' if ok else 'FAIL'}: {name} ({detail})" for name, ok, detail in results], "",
             "Closest neighbours in each ranking (a gap this small can swap with another seed):",
             *[f"- {line}" for line in closest_pairs(df)], "",
             f"Command: `{command}`", "",
             f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or '?'} "
             f"({demo.cpu_count()} CPU cores available, shared with other users), total {time.perf_counter() - t0:.0f} s:",
             *[f"- {n}" for n in notes], "",
             f"Runs that were already finished are reused, not retrained (their own training times are in "
             f"each summary.json → wall_time_s). Δp per run and rank: {args.name}.csv (Δp against the "
             f"benchmark's STL reference).", ""]
    (out / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(df.to_string(index=False))

