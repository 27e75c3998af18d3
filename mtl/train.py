"""Command line: `python -m mtl.train benchmark=<b> method=<m> seed=<s> [key=value ...]`.

Programmatic use (tests, notebooks): `mtl.train.run(["benchmark=synthetic", "method=ew"])`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import mtl.schema  # noqa: F401  registers `train_schema`, the first entry of configs/train.yaml's defaults

EXIT_USER_ERROR = 2  # a bad value, missing data, a locked or changed run dir: the message says the fix
EXIT_PREEMPTED = 3   # stopped by SIGUSR1/SIGUSR2/SIGTERM after saving a checkpoint: run again to resume
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def train(cfg: DictConfig) -> Path:
    from mtl.trainer import Trainer

    return Trainer(cfg).run()


def compose(overrides: list[str]) -> DictConfig:
    """The fully composed config for `overrides` (no Hydra job is started)."""
    from hydra import compose as _compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = _compose(config_name="train", overrides=list(overrides))
    mtl.schema.check(cfg)
    return cfg


def run(overrides: list[str]) -> Path:
    """Train with `overrides` and return the run directory."""
    return train(compose(overrides))


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.errors import ConfigCompositionException

    from mtl.errors import MTLError, Preempted

    try:
        mtl.schema.check(cfg)  # what compose() checks, for runs Hydra composed itself (multiruns)
        train(cfg)
    except ConfigCompositionException as err:
        print(f"error: ConfigCompositionException: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except Preempted as err:  # checkpoint saved; exit status 3 tells a wrapper script to requeue
        print(f"[mtl] {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_PREEMPTED)
    except MTLError as err:  # our errors already say what and how to fix: no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def explain_composition_error(err: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors as one line: what, which key, how to fix."""
    import re

    text = str(err)
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        options = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
        return f"{group}={name}: no such {group} (configs/{group}/{name}.yaml); choose one of {', '.join(options)}"
    from mtl.schema import explain_unknown_key

    if explain_unknown_key(text):  # a key of a config file that mtl/schema.py does not declare
        return explain_unknown_key(text)
    absent = re.search(r"Could not override '([^']+)'", text)
    if absent:
        key = absent.group(1)
        head, _, leaf = key.rpartition(".")
        if head == "method":
            method = next((o.split("=", 1)[1] for o in overrides if o.startswith("method=")), None)
            cfg = compose([o for o in overrides if not o.lstrip("+").startswith("method.")])
            keys = sorted(k for k in cfg.method if k != "name")
            return (f"method.{leaf}: method {method or cfg.method.name} has no hyperparameter {leaf!r}; "
                    f"it takes {', '.join(keys)} (configs/method/{cfg.method.name}.yaml)")
        import dataclasses
        import difflib

        from omegaconf import OmegaConf

        root = compose([o for o in overrides if not o.lstrip("+").startswith(key)])
        parent = OmegaConf.select(root, head) if head else root
        near = difflib.get_close_matches(leaf, list(parent) if hasattr(parent, "keys") else [], n=3)
        hint = f"did you mean {', '.join(f'{head}.{n}' if head else n for n in near)}? " if near else ""
        fixed = hasattr(parent, "keys") and dataclasses.is_dataclass(OmegaConf.get_type(parent))
        return f"{key}: no such config key; {hint}" + \
            ("(the keys are declared in mtl/schema.py)" if fixed else f"(`+{key}=...` adds a new key)")
    if err.__cause__ is not None and str(err.__cause__) not in text:  # e.g. why an override's value did not merge
        text += f": {err.__cause__}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def precheck(argv: list[str]) -> None:
    """Compose a single run's config before Hydra starts, so that a misspelled key, group option or
    override exits with one line and status 2 instead of Hydra's report."""
    from hydra.errors import HydraException

    if any(a.startswith("-") for a in argv):  # multirun, --cfg, --help, ...: Hydra handles them
        return
    try:
        cfg = compose(argv)
    except HydraException as err:
        print(f"error: {type(err).__name__}: {explain_composition_error(err, argv)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    # Hydra creates its job folder inside the run directory before any of our code runs
    from mtl.errors import StorageError
    from mtl.results import RunDir

    try:
        RunDir(cfg.run.root).create()
    except StorageError as err:
        print(f"error: StorageError: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    precheck(sys.argv[1:])
    main()
