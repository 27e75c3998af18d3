"""The scalarization front: fixed-weight runs over a grid of weights, and every method against it.

    python scripts/front.py --bench toy [--seeds 0] [--methods ew,mgda,cagrad]
    python scripts/front.py --bench cityscapes --no-run      # only collect finished runs

The code (and the full description) is mtl/campaigns/front.py.
"""
import sys

from mtl.campaigns.front import main

if __name__ == "__main__":
    sys.exit(main())
