"""QM9 input pipeline against the model: loader batches/s vs EW training steps/s (CPU).

    python scripts/bench_loader.py --epochs 5 --steps 6 --workers 0 2 --out results/bench/loader_qm9_<machine>.csv

The code (and the full description) is mtl/perf/loader.py.
"""
from mtl.perf.loader import main

if __name__ == "__main__":
    main()
