"""`make demo`: train DB-MTL and paper baselines on a CPU-sized QM9 and show what they did.

    python scripts/demo.py [--benchmark qm9_small] [--methods db_mtl db_mtl_beta0.0 uw ew [rlw]]
                           [--seeds 0 1 2] [--slow-seeds 0] [--jobs N] [overrides ...]

The code (and the full description) is mtl/campaigns/demo.py.
"""
from mtl.campaigns.demo import main

if __name__ == "__main__":
    main()
