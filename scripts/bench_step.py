"""Time one training step of each balancing method against a bare loop of T backward passes and EW.

    python scripts/bench_step.py --workload resnet18_office --methods ew db_mtl db_mtl_rep --reps 15

The code (and the full description) is mtl/perf/step.py.
"""
from mtl.perf.step import main

if __name__ == "__main__":
    main()
