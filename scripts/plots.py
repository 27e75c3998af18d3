"""Figures of one or more benchmarks from their runs (also made by scripts/tables.py):

    python scripts/plots.py synthetic [qm9 ...] [--root results/runs] [--out results/tables] [--all-tags]

results/tables/<bench>_delta_p_per_task.png (per-task Δp bars, DB-MTL Fig. 4 style),
<bench>_curves.png (train loss per task, val/test Δp per epoch), <bench>_weights.png (task weights
over time, for methods that report `weights`). The code is mtl.report.tables.plots_main.
"""
import sys

from mtl.report.tables import plots_main

if __name__ == "__main__":
    sys.exit(plots_main())
