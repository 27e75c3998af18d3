"""`make demo`: train several methods on a small benchmark on CPU and print the Δp table.

    python scripts/demo.py [--benchmark qm9_small] [--methods ew si uw db_mtl ...] [--seeds 0]

Runs go to results/runs/<benchmark>/<method>/seed<s>/ (finished runs are skipped, so a second
`make demo` only prints the table); the table is also written to results/tables/demo_<benchmark>.md
with a bar plot of Δp next to it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mtl.report import aggregate, delta_table_markdown, load_summaries
from mtl.train import run

# 11 tasks: gradient methods cost ~11 backward passes per step, so the default set keeps one (DB-MTL)
DEFAULT_METHODS = ["ew", "si", "uw", "gls", "db_mtl"]


def bar_plot(agg, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * len(agg) + 1.2))
    ax.barh(agg["method"], agg["delta_p"], xerr=agg["delta_p_std"], color="tab:blue")
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("Δp vs STL (%), higher is better")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", default="qm9_small")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--root", default="results/runs")
    ap.add_argument("--tables", default="results/tables", help="where the table and plot go")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.epochs=2")
    args = ap.parse_args(argv)
    for method in args.methods:
        for seed in args.seeds:
            print(f"== {args.benchmark} / {method} / seed {seed}", flush=True)
            run([f"benchmark={args.benchmark}", f"method={method}", f"seed={seed}", "logger=none",
                 f"run.root={args.root}", *args.overrides])
    df = load_summaries(args.root, args.benchmark)
    df = df[df["method"].isin(args.methods) & df["seed"].isin(args.seeds)]
    agg = aggregate(df)
    table = delta_table_markdown(agg)
    out = Path(args.tables) / f"demo_{args.benchmark}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    bar_plot(agg, out.with_suffix(".png"))
    print(f"\nΔp against the STL reference of {args.benchmark} (selected epoch, mean over seeds):\n")
    print(table)
    print(f"\nwritten: {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
