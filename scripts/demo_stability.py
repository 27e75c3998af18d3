"""Is the demo's ranking of methods stable? (two seeds at the demo's budget, one at twice the budget)

    python scripts/demo_stability.py [--benchmark qm9_small] [--methods ...] [--seeds 0 1] [--out results/demo]

The code (and the full description) is mtl/demo_stability.py.
"""
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # `python scripts/demo_stability.py` without an install
    sys.path.insert(0, str(PROJECT))

from mtl.demo_stability import main  # noqa: E402

if __name__ == "__main__":
    main()
