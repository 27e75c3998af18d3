"""Regenerate the paper-layout tables (and plots) from results/runs/**/summary.json; with the wandb
logger (the default, offline) also log each benchmark's table and plots to W&B. Usage: mtl/report/tables.py
TABLES_USAGE, or `python scripts/tables.py --help`."""
import sys

from mtl.report.tables import main

if __name__ == "__main__":
    sys.exit(main())
