"""Reproduce a paper table: train every method of configs/experiment/reproduce_<name>.yaml × seeds,
plus STL (one run per task), then regenerate the table(s) (logged to W&B with the runs' logger).

    python scripts/reproduce.py nyuv2 [--launcher submitit_local|slurm] [--seeds 0,1,2] [overrides ...]
    python scripts/reproduce.py demo                 # CPU scale: synthetic + qm9_small
    python scripts/reproduce.py nyuv2 --dry-run      # print the Hydra multirun commands only
    python scripts/reproduce.py nyuv2 --tables-only  # just regenerate results/tables/nyuv2.*

Relaunching is safe: finished runs are skipped and interrupted runs resume from their checkpoint.
A failed run does not stop the others (launcher local); failures are listed at the end and the
table marks what is missing.
"""
from __future__ import annotations

import argparse

from mtl.benchmarks import num_tasks
from mtl.config.compose import compose
from mtl.report.tables import logger_config, regenerate
from mtl.campaigns.workflows import one_line_errors, Group, execute, load_experiment, report_failures, sweep_params


def plan(name: str, *, seeds: list[str] | None = None, methods: list[str] | None = None,
         stl: bool | None = None, overrides: list[str] = ()) -> tuple[list[str], list[Group]]:
    """(benchmarks, job groups) of an experiment: one MTL group and one STL group per benchmark."""
    exp_name = f"reproduce_{name}"
    exp = load_experiment(exp_name)
    params = sweep_params(exp)
    benches = params.pop("benchmark")
    params["method"] = methods or params["method"]
    params["seed"] = seeds or params["seed"]
    stl_cfg = (exp.get("reproduce") or {}).get("stl", False) if stl is None else stl
    groups = []
    for b in benches:
        groups.append(Group([f"experiment={exp_name}", f"benchmark={b}"], dict(params)))
        if stl_cfg is True or (not isinstance(stl_cfg, bool) and b in stl_cfg):
            T = num_tasks(compose([f"benchmark={b}", *overrides]).benchmark)
            groups.append(Group([f"experiment={exp_name}", f"benchmark={b}", "method=stl", "run.tag=_${method.task}"],
                                {"method.task": [str(i) for i in range(T)], "seed": params["seed"]}))
    return benches, groups


@one_line_errors
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="experiment suffix: nyuv2 | nyuv2_segnet | cityscapes | qm9 | office31 | officehome | demo")
    ap.add_argument("--launcher", default="local", help="local | a configs/launcher/<name> Hydra launcher")
    ap.add_argument("--seeds", default=None, help="comma list; default: the experiment file's")
    ap.add_argument("--methods", default=None, help="comma list; default: the experiment file's")
    ap.add_argument("--no-stl", action="store_true", help="skip the STL runs")
    ap.add_argument("--root", default="results/runs", help="where the tables read runs from (match run.root)")
    ap.add_argument("--out", default="results/tables")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--tables-only", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_intermixed_args(argv)
    seeds = args.seeds.split(",") if args.seeds else None
    methods = args.methods.split(",") if args.methods else None
    benches, groups = plan(args.name, seeds=seeds, methods=methods, stl=False if args.no_stl else None,
                           overrides=args.overrides)
    rc = 0
    if not args.tables_only:
        failures = execute(groups, args.launcher, extra=args.overrides, dry_run=args.dry_run)
        rc = report_failures(failures)
    if args.dry_run:
        return 0
    logger = logger_config([o for o in args.overrides if o.lstrip("+~").startswith("logger")])  # as the runs'
    for b in benches:
        regenerate(b, args.root, args.out, logger=logger)
    return rc

