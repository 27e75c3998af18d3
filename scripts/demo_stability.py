"""Is the demo's ranking of methods stable? (two seeds at the demo's budget, one at twice the budget)

    python scripts/demo_stability.py [--benchmark qm9_small] [--methods ...] [--seeds 0 1] [--out results/demo]

The code (and the full description) is mtl/campaigns/demo_stability.py.
"""
from mtl.campaigns.demo_stability import main

if __name__ == "__main__":
    main()
