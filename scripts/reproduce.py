"""Reproduce a paper table: train every method of configs/experiment/reproduce_<name>.yaml × seeds,
plus STL (one run per task), then regenerate the table(s).

    python scripts/reproduce.py nyuv2 [--launcher submitit_local|slurm] [--seeds 0,1,2] [overrides ...]
    python scripts/reproduce.py demo                 # CPU scale: synthetic + qm9_small
    python scripts/reproduce.py nyuv2 --dry-run      # print the Hydra multirun commands only
    python scripts/reproduce.py nyuv2 --tables-only  # just regenerate results/tables/nyuv2.*

The code (and the full description) is mtl/campaigns/reproduce.py.
"""
import sys

from mtl.campaigns.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
