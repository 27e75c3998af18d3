"""Campaign safety of the runner: no silent CPU, one writer per run directory, resume only what was
started, validation before any file is touched, preemption checkpoints, checkpoint policy,
solver-failure counts and the cuDNN policy key. Every scenario uses real processes where a real
campaign would (relaunches, duplicated jobs, signals)."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from mtl import methods
from mtl.errors import ConfigChanged, InvalidValue, NoGPU
from mtl.methods.base import LossWeighting
from mtl.run.rundir import RunDir
from mtl.run.testing import kill_after_epoch, signal_after_steps
from mtl.config.compose import compose
from mtl.errors import EXIT_PREEMPTED, EXIT_USER_ERROR
from tests.test_train import _metrics_without_timing as metrics_without_timing

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["benchmark=synthetic", "benchmark.build.n_train=256", "logger=none", "trainer.progress=false"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def cli(*overrides, timeout=300):
    return subprocess.run([sys.executable, "-m", "mtl.train", *overrides], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def run_dir(root, method="ew", seed=0, bench="synthetic"):
    return Path(root) / bench / method / f"seed{seed}"


def digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file()
            and p.name in ("summary.json", "checkpoint.pt", "metrics.jsonl")}


# ---- 2. no silent CPU ----------------------------------------------------------------------------
@pytest.mark.parametrize("bench", ["nyuv2", "nyuv2_segnet", "cityscapes", "qm9", "qm9_nashmtl", "office31",
                                   "officehome"])
def test_gpu_benchmark_stops_without_gpu_before_touching_anything(tmp_path, bench):
    from mtl.run.entry import run

    assert not torch.cuda.is_available()
    with pytest.raises(NoGPU, match="pass device=cpu"):
        run([f"benchmark={bench}", "logger=none", f"run.root={tmp_path}"])
    assert not any(tmp_path.iterdir())  # no run directory, no data cache


@pytest.mark.parametrize("bench", ["synthetic", "toy", "qm9_small"])
def test_cpu_sized_benchmarks_keep_auto(bench):
    assert compose([f"benchmark={bench}"]).benchmark.needs_gpu is False


def test_device_recorded_in_config_and_summary(train):
    path = train([*SHORT, "trainer.epochs=1", "method=ew"])
    assert RunDir(path).read_summary()["device"] == "cpu"
    assert "runtime:" in (path / "config.yaml").read_text() and "device: cpu" in (path / "config.yaml").read_text()


def test_cli_no_gpu_is_one_line_exit_2(tmp_path):
    r = cli("benchmark=nyuv2", "logger=none", f"run.root={tmp_path}")
    assert r.returncode == EXIT_USER_ERROR
    assert r.stderr.strip().count("\n") == 0 and "NoGPU" in r.stderr and "device=cpu" in r.stderr


# ---- 4. preemption and checkpoint policy --------------------------------------------------------
def test_preemption_signal_checkpoints_mid_epoch_and_resume_equals_uninterrupted(tmp_path):
    common = [*SHORT, "trainer.epochs=3", "method=db_mtl", "seed=3"]
    from mtl.run.entry import run

    full = run([*common, f"run.root={tmp_path / 'full'}"])
    # 4 steps per epoch: the signal arrives after step 6, i.e. in the middle of epoch 1
    r = cli(*common, f"run.root={tmp_path / 'cut'}", signal_after_steps(6))
    assert r.returncode == EXIT_PREEMPTED, r.stderr[-2000:]
    assert "SIGUSR1" in r.stdout and "epoch 2 step 2" in r.stderr
    cut = run_dir(tmp_path / "cut", "db_mtl", 3)
    ckpt = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["partial"]["steps"] == 2 and not (cut / "summary.json").exists()
    resumed = run([*common, f"run.root={tmp_path / 'cut'}"])
    assert metrics_without_timing(resumed) == metrics_without_timing(full)
    a, b = RunDir(full).read_summary(), RunDir(resumed).read_summary()
    assert (a["metrics"], a["delta_p"], a["steps"], a["backward_passes"]) == \
           (b["metrics"], b["delta_p"], b["steps"], b["backward_passes"])


def test_preemption_without_checkpoints_saves_nothing_and_says_so(tmp_path):
    r = cli(*SHORT, "trainer.epochs=3", f"run.root={tmp_path}", "run.checkpoint=false",
            signal_after_steps(6))
    assert r.returncode == EXIT_PREEMPTED and "nothing saved" in r.stderr, r.stderr[-2000:]
    assert not (run_dir(tmp_path) / "checkpoint.pt").exists()


def test_sigterm_from_outside_saves_a_checkpoint(tmp_path):
    # a long run; SIGTERM (SLURM preemption) as soon as it has started training
    proc = subprocess.Popen([sys.executable, "-m", "mtl.train", *SHORT, "benchmark.build.n_train=4096",
                             "trainer.epochs=200", f"run.root={tmp_path}"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = run_dir(tmp_path)
    deadline = time.time() + 120
    while not (path / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    assert "SIGTERM" in out and "checkpoint saved" in err and (path / "checkpoint.pt").exists() and not (path / "summary.json").exists()


def test_checkpoint_every_and_keep_checkpoint(train, tmp_path):
    path = train([*SHORT, "trainer.epochs=3", "method=ew", "trainer.checkpoint_every=2"])
    assert torch.load(path / "checkpoint.pt", weights_only=False)["epoch"] == 2  # always at the end
    path = train([*SHORT, "trainer.epochs=2", "method=uw", "run.keep_checkpoint=false"])
    assert (path / "summary.json").exists() and not (path / "checkpoint.pt").exists()


def test_checkpoint_every_two_epochs_resumes_from_the_last_one(tmp_path):
    common = [*SHORT, "trainer.epochs=3", "method=ew", f"run.root={tmp_path}", "trainer.checkpoint_every=2"]
    r = cli(*common, kill_after_epoch(0))
    assert r.returncode == -9
    assert not (run_dir(tmp_path) / "checkpoint.pt").exists()  # epoch 0 was not a checkpoint epoch
    r = cli(*common, kill_after_epoch(1))
    assert r.returncode == -9 and torch.load(run_dir(tmp_path) / "checkpoint.pt", weights_only=False)["epoch"] == 1


# ---- 5. one writer per run directory -------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from mtl.run.rundir import RunDir
    with RunDir(sys.argv[1]).lock():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def hold_lock(path, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_on_a_run_stops_naming_the_holder(tmp_path):
    holder = hold_lock(run_dir(tmp_path), 60)
    try:
        r = cli(*SHORT, "trainer.epochs=1", f"run.root={tmp_path}")
        assert r.returncode == EXIT_USER_ERROR
        assert "RunLocked" in r.stderr and f"pid {holder.pid}" in r.stderr and "run.wait_for_lock=true" in r.stderr
        assert not (run_dir(tmp_path) / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = hold_lock(run_dir(tmp_path), 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    r = cli(*SHORT, "trainer.epochs=1", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run_dir(tmp_path) / "summary.json").exists()


def test_wait_for_lock_waits_for_the_holder(tmp_path):
    holder = hold_lock(run_dir(tmp_path), 120)
    waiter = subprocess.Popen([sys.executable, "-m", "mtl.train", *SHORT, "trainer.epochs=1", f"run.root={tmp_path}",
                               "run.wait_for_lock=true"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert "waiting" in waiter.stdout.readline()  # the first line it prints: the holder is named
        assert not (run_dir(tmp_path) / "metrics.jsonl").exists()
    finally:
        holder.kill()  # the holder goes away; its lock is released by the kernel
        holder.wait()
    out, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0 and (run_dir(tmp_path) / "summary.json").exists()


def test_two_identical_jobs_at_once_train_exactly_once(tmp_path):
    args = [sys.executable, "-m", "mtl.train", *SHORT, "trainer.epochs=4", "benchmark.build.n_train=2048",
            f"run.root={tmp_path}"]
    procs = [subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    # one trains; the other either found it running (exit 2, RunLocked) or already finished (skip)
    assert codes in ([0, 0], [0, EXIT_USER_ERROR]), results
    assert sum("resuming" in out or "epoch 4" in out for _, out, _ in results) == 1
    assert len(RunDir(run_dir(tmp_path)).read_metrics()) == 4


# ---- 6. resume only what was started -------------------------------------------------------------
def test_resume_with_changed_settings_is_refused(tmp_path):
    common = [*SHORT, "trainer.epochs=3", "method=db_mtl", f"run.root={tmp_path}"]
    assert cli(*common, kill_after_epoch(0)).returncode == -9
    path = run_dir(tmp_path, "db_mtl")
    before = digest(path)
    r = cli(*common, "benchmark.protocol.optimizer.lr=0.5", "method.beta=0.5")
    assert r.returncode == EXIT_USER_ERROR
    assert "ConfigChanged" in r.stderr and "benchmark.protocol.optimizer.lr" in r.stderr and "method.beta" in r.stderr
    assert "run.force=true" in r.stderr and "run.tag" in r.stderr
    assert digest(path) == before


def test_resume_allows_what_cannot_change_results(tmp_path):
    common = [*SHORT, "method=ew", f"run.root={tmp_path}"]
    assert cli(*common, "trainer.epochs=2", kill_after_epoch(0)).returncode == -9
    r = cli(*common, "trainer.epochs=3", "trainer.progress=true", "logger=wandb", "logger.mode=disabled",
            "trainer.checkpoint_every=5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout and len(RunDir(run_dir(tmp_path)).read_metrics()) == 3


def test_fewer_epochs_on_resume_is_refused(train, tmp_path):
    assert cli(*SHORT, "method=ew", f"run.root={tmp_path}", "trainer.epochs=3",
               kill_after_epoch(0)).returncode == -9
    from mtl.run.entry import run

    with pytest.raises(ConfigChanged, match="trainer.epochs"):
        run([*SHORT, "method=ew", f"run.root={tmp_path}", "trainer.epochs=2"])


# ---- 7. check before you touch -------------------------------------------------------------------
BAD = [
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.epochs=-1", "trainer.epochs"),
    ("seed=-1", "seed"),
    ("benchmark.protocol.selection=best_vall", "best_vall"),
    ("grad_engine=bogus", "grad_engine"),
    ("trainer.max_steps_per_epoch=0", "max_steps_per_epoch"),
    ("trainer.checkpoint_every=0", "checkpoint_every"),
    ("benchmark.protocol.optimizer.lr=-0.1", "optimizer.lr"),
    ("benchmark.build.batch_size=0", "batch_size"),
    ("device=cuda", "device=cuda"),
    ("device=gpu0", "device"),
    ("method.loss_transform=sqrt", "sqrt"),
]


@pytest.fixture(scope="module")
def finished_root(tmp_path_factory):
    from mtl.run.entry import run

    root = tmp_path_factory.mktemp("finished")
    run([*SHORT, "trainer.epochs=1", "method=db_mtl", f"run.root={root}"])
    return root


@pytest.mark.parametrize("bad,named", BAD)
def test_forced_rerun_with_invalid_value_leaves_finished_result_intact(tmp_path, finished_root, bad, named):
    shutil.copytree(finished_root, tmp_path, dirs_exist_ok=True)
    path = run_dir(tmp_path, "db_mtl")
    before = digest(path)
    assert set(before) == {"summary.json", "checkpoint.pt", "metrics.jsonl"}
    r = cli(*SHORT, "trainer.epochs=1", "method=db_mtl", f"run.root={tmp_path}", "run.force=true", bad)
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert named in r.stderr and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert digest(path) == before


def test_forced_rerun_keeps_the_replaced_summary(train):
    path = train([*SHORT, "trainer.epochs=1", "method=ew"])
    old = (path / "summary.json").read_text()
    train([*SHORT, "trainer.epochs=1", "method=ew", "run.force=true"])
    assert (path / "summary.replaced.json").read_text() == old


def test_misspelled_selection_rule_fails_before_training(tmp_path):
    from mtl.run.entry import run

    with pytest.raises(InvalidValue, match="best_vall"):
        run([*SHORT, "benchmark.protocol.report=[best_vall]", f"run.root={tmp_path}"])
    assert not any(tmp_path.iterdir())


# ---- 9. solver failures add up -------------------------------------------------------------------
class FailsOnOddSteps(LossWeighting):
    """Test double: reports one failed solve on odd steps, plus a running total (as Nash-MTL does)."""

    name = "_test_fails_on_odd_steps"

    def __init__(self, num_tasks, **kw):
        super().__init__(num_tasks, **kw)
        self.total = 0

    def weights(self, losses):
        return torch.ones_like(losses)

    def _backward(self, losses, shared_params, task_params, rep):
        info = super()._backward(losses, shared_params, task_params, rep)
        failed = self.step_count % 2
        self.total += failed
        return {**info, "solver_failures": failed, "solver_failures_total": self.total}


@pytest.fixture
def failing_method():
    """Registered for one test only: registry-wide tests must not see the test double."""
    from mtl.methods.registry import _REGISTRY

    methods.register(FailsOnOddSteps)
    yield FailsOnOddSteps
    _REGISTRY.pop(FailsOnOddSteps.name)


def test_solver_failures_are_per_step_counts_summed_per_epoch_and_run(tmp_path, failing_method):
    from mtl.run.trainer import Trainer

    cfg = compose([*SHORT, "trainer.epochs=3", f"run.root={tmp_path}", "device=cpu"])
    with open_dict(cfg):
        cfg.method.name = FailsOnOddSteps.name
        cfg.run.dir = str(tmp_path / "fails")
    path = Trainer(cfg).run()
    rows = RunDir(path).read_metrics()
    # 4 steps per epoch, steps 1..12: two odd steps in each epoch
    assert [r["method/solver_failures"] for r in rows] == [2, 2, 2]
    assert [r["method/solver_failures_total"] for r in rows] == [2, 4, 6]  # running value: last
    assert RunDir(path).read_summary()["solver_failures"] == 6


# ---- 10. cuDNN policy ----------------------------------------------------------------------------
@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_key_sets_cudnn(train, deterministic):
    train([*SHORT, "trainer.epochs=1", f"trainer.deterministic={str(deterministic).lower()}", "method=ew",
           f"run.tag=_{deterministic}"])
    assert torch.backends.cudnn.deterministic is deterministic
    assert torch.backends.cudnn.benchmark is (not deterministic)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
