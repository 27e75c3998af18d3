"""`make demo`: train DB-MTL and paper baselines on a CPU-sized QM9 and show what they did.

    python scripts/demo.py [--benchmark qm9_small] [--methods db_mtl uw ew rlw] [--seeds 0]
                           [--jobs N] [overrides ...]

The code (and the full description) is mtl/demo.py.
"""
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # `python scripts/demo.py` without an install
    sys.path.insert(0, str(PROJECT))

from mtl.demo import main  # noqa: E402

if __name__ == "__main__":
    main()
