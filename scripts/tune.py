"""Equal tuning budget: Hydra's Optuna sweeper over the learning rate and the method's tunables for
--trials trials, chosen on validation only; then the best setting on --seeds.

    python scripts/tune.py --method db_mtl --bench synthetic --trials 8 [--seeds 0,1,2]

The code (and the full description) is mtl/campaigns/tune.py.
"""
import sys

from mtl.campaigns.tune import main

if __name__ == "__main__":
    sys.exit(main())
