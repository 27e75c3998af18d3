"""Optimisation trajectories of balancing methods on the CAGrad / Nash-MTL toy problem.

    python scripts/toy_trajectories.py --methods ew mgda pcgrad cagrad nash_mtl db_mtl --steps 3000

The code (and the full description) is mtl/campaigns/toy_trajectories.py.
"""
from mtl.campaigns.toy_trajectories import main

if __name__ == "__main__":
    main()
