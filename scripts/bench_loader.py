"""QM9 input pipeline against the model: loader batches/s vs EW training steps/s (CPU).

    python scripts/bench_loader.py --epochs 5 --steps 6 --workers 0 2 --out results/bench/loader_qm9_<machine>.csv

The measurement is `mtl.bench.loader.run` (see its docstring); this script parses the options and
writes the CSV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=5000, help="molecules built (the first ones)")
    ap.add_argument("--epochs", type=int, default=5, help="loader passes over the training molecules (rounds)")
    ap.add_argument("--steps", type=int, default=6, help="timed model steps (after one warm-up step)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--precompute", choices=["true", "false"], nargs="+", default=["true", "false"])
    ap.add_argument("--graph", choices=["complete", "bonds"], default="complete")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the model steps")
    ap.add_argument("--root", default=None, help="QM9 cache dir (default $QM9_ROOT or data/qm9)")
    ap.add_argument("--assembly", type=int, default=0, metavar="N",
                    help="also time N random batches' assembly on one thread over the full built QM9 (its cache "
                         "and ~500 MB of precomputed complete graphs are built if absent)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "loader_qm9.csv"))
    args = ap.parse_args(argv)

    from mtl.bench.loader import run

    df = run(limit=args.limit, batch_size=args.batch_size, epochs=args.epochs, steps=args.steps, workers=args.workers,
             precompute=[p == "true" for p in args.precompute], graph=args.graph, threads=args.threads,
             root=args.root, assembly_batches=args.assembly)
    df.to_csv(args.out, index=False)
    print(df[["what", "precompute", "workers", "per_s", "per_s_min", "per_s_max", "ratio", "first_batch_s"]].to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
