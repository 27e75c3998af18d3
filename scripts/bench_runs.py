"""Wall time of whole training runs through the trainer, relative to EW (same process, interleaved).

    python scripts/bench_runs.py --benchmark synthetic --epochs 5 --methods ew nash_mtl --repeats 2

After an untimed one-step run of every method (imports, Hydra, first-call set-up), each repeat
runs every method once, in order, in this process (logger off, no progress bar, a fresh
run directory each time, checkpoints on as in a real run); the median wall time per method and its
ratio to EW's are written to results/bench/runs_<benchmark>.csv with the machine.
Extra Hydra overrides go after `--`, e.g. `-- benchmark.build.n_train=512`.
"""
from mtl.bench.runs import main

if __name__ == "__main__":
    main()
