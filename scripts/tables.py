"""Regenerate the paper-layout tables (and plots) from results/runs/**/summary.json.

    python scripts/tables.py                       # every benchmark that has runs
    python scripts/tables.py nyuv2 qm9 [--rule last10] [--reference own] [--all-tags] [--no-plots]

Writes results/tables/<benchmark>.{md,tex,csv} (ours mean ± std over seeds, the paper's value and
ours − paper per metric, Δp, Δm, mean rank; paper methods without runs are marked "—") and, unless
--no-plots, results/tables/<benchmark>_{delta_p_per_task,curves,weights}.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mtl.tables import regenerate


def benchmarks_with_runs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*/seed*/summary.json"))) \
        if root.exists() else []


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benchmarks", nargs="*", help="default: every benchmark with runs under --root")
    ap.add_argument("--root", default="results/runs")
    ap.add_argument("--out", default="results/tables")
    ap.add_argument("--rule", default=None, help="selection rule from summary 'reported' (default: the protocol's)")
    ap.add_argument("--reference", default="config", choices=["config", "own"],
                    help="Δ against the benchmark YAML's reference (paper STL row) or our own STL runs")
    ap.add_argument("--all-tags", action="store_true", help="also list tagged runs (sweep points) as rows")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    benches = args.benchmarks or benchmarks_with_runs(Path(args.root))
    if not benches:
        print(f"no finished runs under {args.root}; nothing to tabulate")
    for b in benches:
        regenerate(b, args.root, args.out, rule=args.rule, reference=args.reference, include_tags=args.all_tags,
                   plots=not args.no_plots)


if __name__ == "__main__":
    main()
