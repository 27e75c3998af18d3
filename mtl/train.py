"""Command line: `python -m mtl.train benchmark=<b> method=<m> seed=<s> [key=value ...]`.

Programmatic use (tests, notebooks): `mtl.train.run(["benchmark=synthetic", "method=ew"])`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

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
        return _compose(config_name="train", overrides=list(overrides))


def run(overrides: list[str]) -> Path:
    """Train with `overrides` and return the run directory."""
    return train(compose(overrides))


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from mtl.errors import MTLError, Preempted

    try:
        train(cfg)
    except Preempted as err:  # checkpoint saved; exit status 3 tells a wrapper script to requeue
        print(f"[mtl] {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_PREEMPTED)
    except MTLError as err:  # our errors already say what and how to fix: no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
