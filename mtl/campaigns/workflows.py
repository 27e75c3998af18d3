"""Run many trainings from an experiment file (configs/experiment/*.yaml): in this process, one after
the other (launcher `local`), or as Hydra multiruns through a Hydra launcher (`submitit_local`,
`slurm`, ... = configs/launcher/<name>.yaml). Either way finished runs are skipped and interrupted
ones resume (the trainer does both per run dir), so relaunching a workflow is always safe.

A job group is (fixed overrides, {key: [values]}); a group is one Hydra multirun (the cartesian
product of its values) or, locally, a loop over that product.
"""
from __future__ import annotations

import functools
import itertools
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from mtl.config.compose import CONFIG_DIR, compose
from mtl.errors import EXIT_PREEMPTED, EXIT_USER_ERROR, InvalidValue, MTLError, Preempted

EXPERIMENTS = Path(CONFIG_DIR) / "experiment"
PROJECT = Path(CONFIG_DIR).parent


def load_experiment(name: str):
    """The composed config of `experiment=<name>`, Hydra's own node included: its
    `hydra.sweeper.params` is the grid, with what the experiment's defaults list pulls in (e.g. the
    paper's method list, configs/methods/paper.yaml)."""
    from hydra import compose as _compose, initialize_config_dir

    path = EXPERIMENTS / f"{name}.yaml"
    if not path.exists():
        have = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
        raise FileNotFoundError(f"no experiment {path}; available: {have}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return _compose(config_name="train", overrides=[f"experiment={name}"], return_hydra_config=True)


def sweep_params(exp) -> dict[str, list[str]]:
    """{key: [values]} from the experiment's hydra.sweeper.params (comma-separated strings)."""
    params = OmegaConf.select(exp, "hydra.sweeper.params") or {}
    return {k: [v.strip() for v in str(val).split(",") if v.strip()] for k, val in params.items()}


@dataclass
class Group:
    fixed: list[str]
    sweep: dict[str, list[str]] = field(default_factory=dict)

    def jobs(self) -> list[list[str]]:
        keys = list(self.sweep)
        return [[*self.fixed, *(f"{k}={v}" for k, v in zip(keys, combo))]
                for combo in itertools.product(*(self.sweep[k] for k in keys))]

    def multirun_args(self) -> list[str]:
        return [*self.fixed, *(f"{k}={','.join(v)}" for k, v in self.sweep.items())]


def run_local(groups: list[Group], *, extra: list[str] = (), keep_going: bool = True) -> list[tuple[list[str], str]]:
    """Train every job of every group in this process; returns [(overrides, error)] of failed jobs."""
    from mtl.run.entry import run

    failures = []
    jobs = [j for g in groups for j in g.jobs()]
    for n, job in enumerate(jobs, 1):
        overrides = [*job, *extra]
        print(f"[workflow] job {n}/{len(jobs)}: {' '.join(overrides)}", flush=True)
        try:
            run(overrides)
        except Preempted:  # the machine is being taken away: stop the workflow (exit 3: requeue it)
            raise
        except Exception as err:  # noqa: BLE001 - one failed run must not stop a 60-run table
            if not keep_going:
                raise
            if isinstance(err, MTLError):  # says what and how already
                print(f"error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            else:
                traceback.print_exc()
            failures.append((overrides, f"{type(err).__name__}: {err}"))
    return failures


def multirun_command(group: Group, launcher: str, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "mtl.train", "-m", f"launcher={launcher}", *group.multirun_args(), *extra]


def run_multirun(groups: list[Group], launcher: str, *, extra: list[str] = ()) -> list[tuple[list[str], str]]:
    """One `python -m mtl.train -m launcher=<launcher> ...` per group; returns failed groups."""
    failures = []
    for g in groups:
        cmd = multirun_command(g, launcher, extra)
        print("[workflow] " + " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=PROJECT).returncode
        if rc == EXIT_PREEMPTED:  # stopped by a signal: stop the workflow as well
            raise Preempted(f"the multirun {' '.join(cmd[2:])} was stopped by a signal; run the same command "
                            f"again (or requeue the job) to go on")
        if rc != 0:
            failures.append((cmd, f"exit status {rc} (its failed jobs are listed above)"))
    return failures


def check_jobs(groups: list[Group], launcher: str = "local", extra: list[str] = ()) -> int:
    """Compose and check every job before the first one starts (values, names, the device, the
    launcher), so a workflow that cannot run says so once, in one line, with nothing written.
    Returns the number of jobs checked."""
    from hydra.errors import HydraException

    from mtl.config.compose import composition_error_type, explain_composition_error
    from mtl.run.device import precheck_device, resolve_device
    from mtl.run.launchers import check_launcher
    from mtl.run.validate import check_values, validate

    if launcher != "local":
        check_launcher(launcher, list(extra))
    jobs = [[*job, *extra] for g in groups for job in g.jobs()]
    seen: set[tuple[str, ...]] = set()
    for overrides in jobs:
        try:
            cfg = compose(overrides)
            str(cfg.run.dir)
        except HydraException as err:
            from mtl.errors import UnknownName

            cls = UnknownName if composition_error_type(err) == "UnknownName" else InvalidValue
            raise cls(explain_composition_error(err, overrides)) from None
        except Exception as err:  # noqa: BLE001 - an unresolvable ${...}: one line
            from omegaconf.errors import OmegaConfBaseException

            if not isinstance(err, OmegaConfBaseException):
                raise
            raise InvalidValue(f"{' '.join(overrides)}: {str(err).splitlines()[0]}") from None
        check_values(cfg)
        gpu = dict(needs_gpu=bool(cfg.benchmark.get("needs_gpu", False)), benchmark=cfg.benchmark.name)
        precheck_device(str(cfg.device), **gpu)  # before torch is imported where that is certain
        key = tuple(o for o in overrides if not o.startswith("seed="))  # seeds share the method check
        if key not in seen:
            seen.add(key)
            validate(cfg)
            resolve_device(str(cfg.device), **gpu)
    return len(jobs)


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A workflow's `main`: a user error is one `error:` line on stderr and exit status 2; a stop
    signal (Ctrl-C, SIGTERM) is one line and exit status 3, like a single run."""
    from mtl.run.preemption import Interrupted, stop_on_signals

    @functools.wraps(main)
    def wrapped(argv=None) -> int:
        stop_on_signals()
        try:
            return main(argv)
        except Preempted as err:
            print(f"[workflow] {err}", file=sys.stderr, flush=True)
            return EXIT_PREEMPTED
        except Interrupted as err:
            print(f"[workflow] {err.name} during {err.during}: stopped (finished runs are kept, every file is "
                  f"whole); run the same command again to go on", file=sys.stderr, flush=True)
            return EXIT_PREEMPTED
        except MTLError as err:
            print(f"error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR

    return wrapped


def prepare_data(groups: list[Group], extra: list[str] = ()) -> None:
    """Build each benchmark's shared data cache (its config's `prepare` block) once, here, before
    the jobs start: many jobs starting on an empty cache would otherwise queue behind one build."""
    from hydra.utils import instantiate

    done = set()
    for g in groups:
        cfg = compose([*(o for o in g.fixed if o.startswith(("benchmark", "experiment"))), *extra])
        key = OmegaConf.to_yaml(cfg.benchmark.get("prepare") or {})
        if cfg.benchmark.get("prepare") is not None and key not in done:
            print(f"[workflow] preparing data of {cfg.benchmark.name}", flush=True)
            instantiate(cfg.benchmark.prepare)
            done.add(key)


def execute(groups: list[Group], launcher: str = "local", *, extra: list[str] = (), dry_run: bool = False
            ) -> list[tuple[list[str], str]]:
    """Run `groups` locally or through a Hydra launcher; with dry_run only print the multirun commands."""
    if dry_run:
        for g in groups:
            print(shlex.join(["python", *multirun_command(g, launcher, extra)[1:]]))
        return []
    check_jobs(groups, launcher, list(extra))  # all of them, before the first starts or a cache is built
    prepare_data(groups, [e for e in extra if e.startswith("benchmark.")])
    if launcher == "local":
        return run_local(groups, extra=list(extra))
    return run_multirun(groups, launcher, extra=list(extra))


def report_failures(failures: list[tuple[list[str], str]]) -> int:
    if not failures:
        return 0
    print(f"\n[workflow] {len(failures)} job(s) failed, the others ran (finished runs are kept; the same "
          f"command retries only what is missing):", file=sys.stderr)
    for job, err in failures:
        print(f"  {' '.join(job)}: {err.splitlines()[0] if err else ''}", file=sys.stderr)
    return 1
