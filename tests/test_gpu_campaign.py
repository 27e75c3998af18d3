"""Campaign behaviour on a real GPU (marker `gpu`, part of `make test-gpu`): the `gpus` launcher runs
a two-job multirun with each run placed on the GPU, and a run stopped by a preemption signal in the
middle of an epoch resumes on CUDA to the numbers of an uninterrupted CUDA run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mtl.run.testing import signal_after_steps

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
SHORT = ["benchmark=synthetic", "benchmark.build.n_train=256", "logger=none", "trainer.progress=false"]


@pytest.fixture(autouse=True)
def needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("these tests check behaviour on CUDA; run them on a GPU machine (make test-gpu)")


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "mtl.train", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_gpus_launcher_runs_two_jobs_on_the_gpu(tmp_path):
    r = cli("-m", "launcher=gpus", *SHORT, "method=ew,db_mtl", "trainer.epochs=2", f"run.root={tmp_path / 'runs'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}", "hydra.launcher.gpus_per_job=0.5",
            "hydra.launcher.cpus_per_job=1", "+hydra.launcher.ray_init.object_store_memory=100000000")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for method in ("ew", "db_mtl"):
        run = tmp_path / "runs" / "synthetic" / method / "seed0"
        runtime = yaml.safe_load((run / "config.yaml").read_text())["runtime"]
        assert runtime["device"] == "cuda" and runtime["gpu_name"], runtime
        assert runtime["cuda_visible_devices"] == "0", runtime  # Ray gave the run one GPU
        assert (run / "summary.json").exists()


@pytest.mark.parametrize("method", ["db_mtl", "igbv2"])
def test_preempted_mid_epoch_resumes_on_cuda_to_the_same_numbers(tmp_path, method):
    import json

    common = [*SHORT, "trainer.epochs=3", f"method={method}", "seed=3", "device=cuda"]
    full = cli(*common, f"run.root={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-3000:]
    cut = cli(*common, f"run.root={tmp_path / 'cut'}", signal_after_steps(6))
    assert cut.returncode == 3, cut.stdout[-2000:] + cut.stderr[-3000:]
    resumed = cli(*common, f"run.root={tmp_path / 'cut'}")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "full" / "synthetic" / method / "seed3" / "summary.json").read_text())
    b = json.loads((tmp_path / "cut" / "synthetic" / method / "seed3" / "summary.json").read_text())
    assert b["device"] == "cuda"
    assert (a["metrics"], a["delta_p"], a["steps"]) == (b["metrics"], b["delta_p"], b["steps"])
