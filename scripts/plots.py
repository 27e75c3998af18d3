"""Figures of one or more benchmarks from their runs (also made by scripts/tables.py):

    python scripts/plots.py synthetic [qm9 ...] [--root results/runs] [--out results/tables] [--all-tags]

results/tables/<bench>_delta_p_per_task.png (per-task Δp bars, DB-MTL Fig. 4 style),
<bench>_curves.png (train loss per task, val/test Δp per epoch), <bench>_weights.png (task weights
over time, for methods that report `weights`).
"""
from __future__ import annotations

import argparse

from mtl.plots import benchmark_plots
from mtl.tables import build_table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benchmarks", nargs="+")
    ap.add_argument("--root", default="results/runs")
    ap.add_argument("--out", default="results/tables")
    ap.add_argument("--all-tags", action="store_true", help="include tagged runs (sweep points)")
    args = ap.parse_args(argv)
    for b in args.benchmarks:
        for p in benchmark_plots(build_table(b, args.root, include_tags=args.all_tags), args.out):
            print("written:", p)


if __name__ == "__main__":
    main()
