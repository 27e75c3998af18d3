"""Check a composed config before anything is written: a run with a bad value stops with one line
naming the key and the fix while its run directory (and any finished result in it) is untouched."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mtl.errors import InvalidValue, MTLError, brief
from mtl.scoring.selection import RULES

GRAD_ENGINES = ("loop", "batched", "auto")
PRECISIONS = ("fp32", "bf16", "fp16")  # mtl/run/precision.py's (kept here: this module imports no torch)
SEED_MAX = 2**32 - 1  # numpy's seed range


def _int(cfg: DictConfig, key: str, minimum: int, *, optional: bool = False, maximum: int | None = None) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        more = " or null" if optional else ""
        raise InvalidValue(f"{key}={value!r}: must be an integer >= {minimum}{more}")
    if maximum is not None and value > maximum:
        raise InvalidValue(f"{key}={value}: must be an integer from {minimum} to {maximum} (numpy's seed range)")


def _positive(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if allow_zero else value > 0):
        raise InvalidValue(f"{key}={value!r}: must be a {'non-negative' if allow_zero else 'positive'} number")


# names that become folder names: a run directory is always <run.root>/<benchmark>/<method><tag>/seed<s>/
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]*")
_TAG = re.compile(r"[A-Za-z0-9_.+=,-]*")
MAX_NAME = 100


def check_run_path(cfg: DictConfig) -> None:
    """Raise InvalidValue unless the run directory is a plain folder inside run.root: tag, benchmark
    and method names of letters, digits and _ . + = , - (no /, no leading dot), at most 100
    characters each, and run.dir below run.root."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        tag = OmegaConf.select(cfg, "run.tag")
        str(cfg.run.dir)
    except OmegaConfBaseException as err:
        raise InvalidValue(f"run.tag / run.dir: cannot be resolved ({brief(err, 160)}); use a plain value or an "
                           f"interpolation of an existing key, e.g. 'run.tag=_${{method.task}}'") from None
    tag = "" if tag is None else str(tag)
    if len(tag) > MAX_NAME:
        raise InvalidValue(f"run.tag: {len(tag)} characters long; at most {MAX_NAME} (it becomes part of a "
                           f"folder name); use a shorter tag, e.g. run.tag=_beta0.5")
    if not _TAG.fullmatch(tag) or ".." in tag:
        raise InvalidValue(f"run.tag={tag!r}: may hold only letters, digits and _ . + = , - (it is appended to "
                           f"the method's folder name; a / or .. would put the run outside run.root, where "
                           f"tables never look); e.g. run.tag=_beta0.5")
    for key in ("benchmark.name", "method.name"):
        name = str(OmegaConf.select(cfg, key))
        if len(name) > MAX_NAME or not _NAME.fullmatch(name):
            raise InvalidValue(f"{key}={name!r}: not a valid name (letters, digits and _ . + = , -, not starting "
                               f"with a dot, at most {MAX_NAME} characters; it becomes a folder name)")
    root = Path(os.path.abspath(os.path.expanduser(str(cfg.run.root))))
    run_dir = Path(os.path.abspath(os.path.expanduser(str(cfg.run.dir))))
    if root not in run_dir.parents:
        raise InvalidValue(f"run.dir={str(cfg.run.dir)!r}: not inside run.root={str(root)!r}; leave run.dir at its "
                           f"default (<run.root>/<benchmark>/<method><run.tag>/seed<seed>) and choose the folder "
                           f"with run.root=<dir> and run.tag=<name>")


def validate(cfg: DictConfig) -> None:
    """Raise InvalidValue (an MTLError) for the first invalid value found."""
    check_values(cfg)
    _check_method(cfg)
    from mtl.run.loggers import check_logger

    check_logger(OmegaConf.to_container(cfg.logger, resolve=True))


def check_values(cfg: DictConfig) -> None:
    """The checks that need no torch (the command line runs them before its heavy imports)."""
    check_run_path(cfg)
    _int(cfg, "seed", 0, maximum=SEED_MAX)
    _int(cfg, "trainer.epochs", 1)
    _int(cfg, "trainer.max_steps_per_epoch", 1, optional=True)
    _int(cfg, "trainer.checkpoint_every", 1)
    _int(cfg, "threads", 1, optional=True)
    for split in ("train", "val", "test"):  # sizes of the synthetic benchmark's splits: an empty split has NaN metrics
        _int(cfg, f"benchmark.build.n_{split}", 1, optional=True)
    if cfg.grad_engine not in GRAD_ENGINES:
        raise InvalidValue(f"grad_engine={cfg.grad_engine!r}: unknown; choose one of {', '.join(GRAD_ENGINES)}")
    precision = OmegaConf.select(cfg, "trainer.precision") or "fp32"
    if precision not in PRECISIONS:
        raise InvalidValue(f"trainer.precision={precision!r}: unknown; choose one of {', '.join(PRECISIONS)} "
                           f"(fp32 is the papers' setting)")
    protocol = cfg.benchmark.protocol
    for key in ("selection", "report"):
        rules = protocol.get(key)
        for rule in ([rules] if isinstance(rules, str) else list(rules or [])):
            if rule not in RULES:
                raise InvalidValue(f"benchmark.protocol.{key}={rule!r}: unknown selection rule; "
                                   f"choose one of {', '.join(RULES)}")
    _positive(cfg, "benchmark.protocol.optimizer.lr", allow_zero=True)  # lr=0: a frozen model (tests)
    for key in ("benchmark.build.batch_size",
                "benchmark.build.eval_batch_size", "benchmark.build.train_batch_size",
                "benchmark.build.test_batch_size"):
        _positive(cfg, key)
    _check_references(cfg)


def _check_references(cfg: DictConfig) -> None:
    """Δp and Δm divide by the STL reference: a 0 (or a non-number) would only fail after an epoch."""
    for name in ("reference", "reference_m"):
        node = cfg.benchmark.protocol.get(name)
        metrics = node.get("metrics") if node is not None else None
        if not metrics:
            continue
        for task, values in metrics.items():
            for metric, value in (values.items() if hasattr(values, "items") else []):
                key = f"benchmark.protocol.{name}.metrics.{task}.{metric}"
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InvalidValue(f"{key}={value!r}: an STL reference metric must be a number; give the "
                                       f"single-task run's test value (scripts/stl_reference.py computes it)")
                if value == 0:
                    raise InvalidValue(f"{key}=0: Δp and Δm divide by the STL reference, so it cannot be 0; "
                                       f"give the single-task run's non-zero test value (scripts/stl_reference.py)")


def _check_method(cfg: DictConfig) -> None:
    """Build the method once on the CPU: its constructor checks names, values and combinations."""
    from mtl import methods
    from mtl.benchmarks import num_tasks

    hp: dict[str, Any] = OmegaConf.to_container(cfg.method, resolve=True)
    name = hp.pop("name")
    try:
        methods.create(name, num_tasks=num_tasks(cfg.benchmark), engine=cfg.grad_engine, **hp)
    except MTLError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise InvalidValue(f"method={name}: {err}") from None
