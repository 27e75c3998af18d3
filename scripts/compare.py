"""Test a (new) method against the stored baselines under a benchmark's protocol.

    python scripts/compare.py --method my_method --bench nyuv2 [--seeds 0,1,2] [--launcher slurm] [overrides ...]
    python scripts/compare.py --method db_mtl --bench qm9 --no-run     # rank existing runs only

The code (and the full description) is mtl/campaigns/compare.py.
"""
import sys

from mtl.campaigns.compare import main

if __name__ == "__main__":
    sys.exit(main())
