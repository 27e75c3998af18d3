"""Single-task (STL) reference of a benchmark from your own STL runs.

    python scripts/stl_reference.py benchmark=synthetic [--seeds 0 1 2] [extra overrides]

Trains `method=stl method.task=<i>` for every task and seed (run dirs .../stl_<i>/seed<s>/; finished
runs are skipped), takes task i's test metrics of the selected epoch from run stl_<i>, averages over
seeds, and prints the `reference:` block to paste into configs/benchmark/<name>.yaml.
"""
from __future__ import annotations

import argparse
import sys

import yaml

from mtl.report.runs import read_run
from mtl.config.compose import compose
from mtl.run.entry import run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("overrides", nargs="+", help="Hydra overrides; must include benchmark=<name>")
    args = ap.parse_args(argv)
    from mtl.benchmarks import from_config

    tasks = from_config(compose([*args.overrides, "method=stl"]).benchmark).tasks
    reference = {}
    for i, task in enumerate(tasks):
        values: dict[str, list[float]] = {}
        for seed in args.seeds:
            path = run([*args.overrides, "method=stl", f"method.task={i}", f"run.tag=_{i}", f"seed={seed}",
                        "logger=none"])
            row = read_run(path, config=False)
            if row is None:  # named on stderr with how to fix it
                sys.exit(f"error: {path}: STL run of task {task.name} has no readable summary")
            for m in task.metrics:
                values.setdefault(m.name, []).append(row[f"{task.name}/{m.name}"])
        reference[task.name] = {m: round(sum(v) / len(v), 6) for m, v in values.items()}
    seeds = ",".join(map(str, args.seeds))
    print(f"  reference:\n    source: \"own STL runs: scripts/stl_reference.py {' '.join(args.overrides)} "
          f"(mean of seeds {seeds})\"")
    print("    " + yaml.safe_dump({"metrics": reference}, default_flow_style=None).replace("\n", "\n    ").rstrip())

