"""Wall time of whole training runs through the trainer, relative to EW (same process, interleaved).

    python scripts/bench_runs.py --benchmark synthetic --epochs 5 --methods ew nash_mtl --repeats 2

The code (and the full description) is mtl/perf/run_timing.py.
"""
from mtl.perf.run_timing import main

if __name__ == "__main__":
    main()
