"""Shared test fixtures: small thread count, a temporary results root, the runner."""
from __future__ import annotations

import functools
import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# `make test` runs the suite under make: its MAKEFLAGS/MAKELEVEL would make every `make` a test calls a
# sub-make that prints "Entering directory" lines; the tests call make as a user does.
for _var in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """tiny(bench) -> the benchmark's tiny overrides (mtl.benchmarks.fixtures.tiny_overrides), its fixture
    written once per test session."""
    from mtl.benchmarks.fixtures import tiny_overrides

    root = tmp_path_factory.mktemp("tiny_data")
    return functools.cache(lambda bench: tiny_overrides(bench, root))


@pytest.fixture
def run_root(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def train(run_root):
    """train(["benchmark=synthetic", ...]) -> run dir, with logging off and no progress bars."""
    from mtl.run.entry import run

    def _train(overrides):
        return run(["logger=none", "trainer.progress=false", "device=cpu", f"run.root={run_root}", *overrides])

    return _train
