"""One run from Python: `run(["benchmark=synthetic", "method=ew"])` composes the config and trains;
`train(cfg)` trains an already composed config. Both return the run directory."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mtl.config.compose import compose


def train(cfg: DictConfig) -> Path:
    from mtl.run.trainer import Trainer

    return Trainer(cfg).run()


def run(overrides: list[str]) -> Path:
    """Train with `overrides` and return the run directory."""
    return train(compose(overrides))
