"""Command line: `python -m mtl.train benchmark=<b> method=<m> seed=<s> [key=value ...]` (also the
`mtl-train` command). From Python: `mtl.run.entry.run(["benchmark=synthetic", "method=ew"])`.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mtl.config import schema
from mtl.config.compose import CONFIG_DIR, check_experiment, compose, explain_composition_error
from mtl.errors import EXIT_PREEMPTED, EXIT_USER_ERROR
from mtl.run.entry import train


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.errors import ConfigCompositionException

    from mtl.errors import MTLError, Preempted

    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import MissingConfigException

    try:
        schema.check(cfg)  # what compose() checks, for runs Hydra composed itself (multiruns)
        check_experiment(HydraConfig.get().runtime.choices.get("experiment"))
        train(cfg)
    except MissingConfigException as err:
        print(f"error: MissingConfigException: {explain_composition_error(err, [])}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except ConfigCompositionException as err:
        print(f"error: ConfigCompositionException: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except Preempted as err:  # checkpoint saved; exit status 3 tells a wrapper script to requeue
        print(f"[mtl] {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_PREEMPTED)
    except MTLError as err:  # our errors already say what and how to fix: no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


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
    from mtl.errors import InvalidValue, StorageError
    from mtl.run.rundir import RunDir
    from mtl.run.validate import check_run_path

    try:
        check_run_path(cfg)  # a run directory outside run.root (run.tag=/../x) is refused before any write
        RunDir(cfg.run.root).create()
    except InvalidValue as err:
        print(f"error: InvalidValue: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except StorageError as err:
        print(f"error: StorageError: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def cli() -> None:
    """The `mtl-train` console command: `python -m mtl.train` under another name."""
    precheck(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
