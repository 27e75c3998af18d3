"""`launcher=<name>` selects Hydra's launcher; a real multirun through submitit's local executor."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mtl.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,target", [
    ("local", "BasicLauncher"), ("submitit_local", "LocalLauncher"), ("slurm", "SlurmLauncher")])
def test_launcher_group_selects_hydra_launcher(name, target):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"launcher={name}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if name == "slurm":
        for key in ("partition", "gpus_per_node", "timeout_min", "array_parallelism"):
            assert key in cfg.hydra.launcher


def test_submitit_local_multirun(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "mtl.train", "-m", "launcher=submitit_local", "benchmark=synthetic",
           "method=ew,uw", "seed=0", "logger=none", "trainer.epochs=1", "trainer.max_steps_per_epoch=2",
           "benchmark.build.n_train=128", "trainer.progress=false", f"run.root={tmp_path / 'runs'}",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", "hydra.launcher.cpus_per_task=1"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for m in ("ew", "uw"):
        assert (tmp_path / "runs" / "synthetic" / m / "seed0" / "summary.json").exists()
    assert list((tmp_path / "multirun" / ".submitit").iterdir())  # jobs went through submitit
