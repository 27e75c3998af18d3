"""Single-task (STL) reference of a benchmark from your own STL runs.

    python scripts/stl_reference.py benchmark=synthetic [--seeds 0 1 2] [extra overrides]

The code (and the full description) is mtl/campaigns/stl_reference.py.
"""
from mtl.campaigns.stl_reference import main

if __name__ == "__main__":
    main()
