"""DB-MTL's β and α_k studies (Figs. 5 and 6): run the grid, then write a CSV and a box plot.

    python scripts/sweep.py beta  --bench synthetic [--seeds 0,1,2] [--points beta0.5,beta0.9]
    python scripts/sweep.py alpha --bench qm9 [--launcher submitit_local|slurm] [hydra overrides ...]
    python scripts/sweep.py beta --bench nyuv2 --no-run      # only collect finished runs

The code (and the full description) is mtl/campaigns/sweeps.py.
"""
import sys

from mtl.campaigns.sweeps import main

if __name__ == "__main__":
    sys.exit(main())
