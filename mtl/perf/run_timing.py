"""Wall time of whole training runs through the trainer, relative to EW (same process, interleaved).

    python scripts/bench_runs.py --benchmark synthetic --epochs 5 --methods ew nash_mtl --repeats 2

After an untimed one-step run of every method (imports, Hydra, first-call set-up), each repeat
runs every method once, in order, in this process (logger off, no progress bar, a fresh
run directory each time, checkpoints on as in a real run); the median wall time per method and its
ratio to EW's are written to results/bench/runs_<benchmark>.csv with the machine.
Extra Hydra overrides go after `--`, e.g. `-- benchmark.build.n_train=512`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from mtl.paths import project_root

ROOT = project_root()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="synthetic")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=["ew", "nash_mtl"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    from mtl.perf import machine
    from mtl.run.entry import run

    names = ["ew", *[m for m in args.methods if m != "ew"]]
    times = {m: [] for m in names}
    for m in names:  # untimed one-step runs first: imports, Hydra, data generation, solver set-up
        with tempfile.TemporaryDirectory() as tmp:
            run([f"benchmark={args.benchmark}", f"method={m}", "trainer.epochs=1", "trainer.max_steps_per_epoch=1",
                 "logger=none", "trainer.progress=false", f"threads={args.threads}", f"run.root={tmp}",
                 *args.overrides])
    for r in range(args.repeats):
        for m in names:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                run([f"benchmark={args.benchmark}", f"method={m}", f"trainer.epochs={args.epochs}", "logger=none",
                     "trainer.progress=false", f"threads={args.threads}", f"run.root={tmp}", *args.overrides])
                times[m].append(time.perf_counter() - t0)
            print(f"repeat {r + 1}: {m} {times[m][-1]:.1f}s", file=sys.stderr, flush=True)
    ew = statistics.median(times["ew"])
    now = dt.datetime.now().isoformat(timespec="seconds")
    rows = [{"method": m, "median_wall_s": round(statistics.median(t), 2), "ratio_to_ew": round(statistics.median(t) / ew, 2),
             "runs": len(t), "benchmark": args.benchmark, "epochs": args.epochs,
             "overrides": " ".join(args.overrides), "machine": machine(args.threads), "date": now}
            for m, t in times.items()]
    df = pd.DataFrame(rows)
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / f"runs_{args.benchmark}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df[["method", "median_wall_s", "ratio_to_ew"]].to_string(index=False))
    print(f"wrote {out}")
