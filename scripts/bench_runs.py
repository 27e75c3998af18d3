"""Wall time of whole training runs through the trainer, relative to EW (same process, interleaved).

    python scripts/bench_runs.py --benchmark synthetic --epochs 5 --methods ew nash_mtl --repeats 2

The code (and the full description) is mtl/bench/runs.py.
"""
from mtl.bench.runs import main

if __name__ == "__main__":
    main()
