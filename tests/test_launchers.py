"""`launcher=<name>` selects Hydra's launcher; a real multirun through submitit's local executor."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mtl.config.compose import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,target", [
    ("local", "BasicLauncher"), ("submitit_local", "LocalLauncher"), ("slurm", "SlurmLauncher"),
    ("gpus", "RayGPULauncher")])
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


@pytest.mark.parametrize("bench,cpus", [("nyuv2", 3), ("qm9", 3)])
@pytest.mark.parametrize("launcher,key", [("slurm", "cpus_per_task"), ("gpus", "cpus_per_job"),
                                          ("submitit_local", "cpus_per_task")])
def test_launchers_reserve_the_loader_workers_cpus(bench, cpus, launcher, key):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"launcher={launcher}", f"benchmark={bench}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher[key] == cpus  # num_workers + the training process
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.tasks_per_node == 1


def test_gpus_launcher_places_each_run_on_its_own_gpu_share(tmp_path):
    """Ray with two fake GPUs: four runs at half a GPU each, every run sees exactly one GPU id and
    each id carries two runs (CUDA_VISIBLE_DEVICES as the run recorded it in config.yaml)."""
    import yaml

    env = {**os.environ, "WANDB_MODE": "disabled", "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "mtl.train", "-m", "launcher=gpus", "hydra.launcher.num_gpus=2",
           "hydra.launcher.num_cpus=2", "hydra.launcher.cpus_per_job=0.5", "hydra.launcher.gpus_per_job=0.5",
           "benchmark=synthetic", "method=ew,uw,rlw,dwa", "seed=0", "logger=none", "trainer.epochs=1",
           "trainer.max_steps_per_epoch=2", "benchmark.build.n_train=128", "trainer.progress=false",
           "device=cpu", f"run.root={tmp_path / 'runs'}", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    seen = {}
    for m in ("ew", "uw", "rlw", "dwa"):
        run = tmp_path / "runs" / "synthetic" / m / "seed0"
        assert (run / "summary.json").exists()
        seen[m] = yaml.safe_load((run / "config.yaml").read_text())["runtime"]["cuda_visible_devices"]
    assert all(v in ("0", "1") for v in seen.values()), seen  # one GPU each, never "0,1" or unset
    assert sorted(seen.values()) == ["0", "0", "1", "1"], seen


@pytest.mark.parametrize("kwargs,match", [({"gpus_per_job": 1.5}, "gpus_per_job"), ({"gpus_per_job": -1}, "gpus_per_job"),
                                          ({"max_concurrent": 0}, "max_concurrent")])
def test_gpus_launcher_rejects_impossible_shares(kwargs, match):
    from hydra_plugins.mtl_ray_launcher.ray_launcher import RayGPULauncher

    with pytest.raises(ValueError, match=match):
        RayGPULauncher(**kwargs)
