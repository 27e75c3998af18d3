"""The runner end to end on `synthetic`: run directory contents, skip/force, errors, kill-and-resume."""
import json
import subprocess
import sys

import pytest

from mtl.errors import NonFiniteLoss
from mtl.run.rundir import RunDir
from mtl.run.testing import kill_after_epoch

SHORT = ["benchmark=synthetic", "trainer.epochs=2", "benchmark.build.n_train=256"]


def test_run_writes_complete_directory(train):
    path = train([*SHORT, "method=ew", "seed=0"])
    assert path.parts[-3:] == ("synthetic", "ew", "seed0")
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"):
        assert (path / name).exists(), name
    summary = json.loads((path / "summary.json").read_text())
    for key in ("selected_epoch", "metrics", "delta_p", "delta_m", "wall_time_s", "steps",
                "backward_passes", "versions", "git_commit"):
        assert key in summary, key
    assert summary["delta_m"] == pytest.approx(-summary["delta_p"])  # one metric per task: Δm = -Δp
    assert summary["steps"] == 2 * 4  # 256 samples / batch 64, two epochs
    assert summary["backward_passes"] == summary["steps"]  # EW: one backward pass per step
    lines = RunDir(path).read_metrics()
    assert [r["epoch"] for r in lines] == [0, 1]
    assert set(lines[0]["train_loss"]) == {"t0", "t1", "t2"}
    assert "val_delta_p" in lines[0] and "test" in lines[0]


def test_finished_run_is_skipped_unless_forced(train, capsys):
    path = train([*SHORT, "method=ew"])
    before = (path / "summary.json").stat().st_mtime_ns
    train([*SHORT, "method=ew"])
    assert "skipping" in capsys.readouterr().out
    assert (path / "summary.json").stat().st_mtime_ns == before
    train([*SHORT, "method=ew", "run.force=true"])
    assert (path / "summary.json").stat().st_mtime_ns != before


def test_non_finite_loss_stops_with_step_task_and_value(train):
    # a learning rate of 1e20 blows the weights up within a few steps
    with pytest.raises(NonFiniteLoss, match=r"step \d+ \(epoch 1\): task 't\d' = (nan|inf)"):
        train([*SHORT, "method=ew", "benchmark.protocol.optimizer.lr=1e20"])


def test_unknown_method_lists_valid_names(train):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="ew"):
        train([*SHORT, "method=nope"])


def _metrics_without_timing(path):
    rows = RunDir(path).read_metrics()
    for r in rows:
        for k in ("train_time_s", "epoch_time_s"):
            r.pop(k)
    return rows


@pytest.mark.parametrize("method", ["ew", "rlw", "db_mtl", "famo"])
def test_kill_and_resume_equals_uninterrupted(tmp_path, method):
    common = [*SHORT, "trainer.epochs=3", f"method={method}", "seed=5", "logger=none", "trainer.progress=false"]
    from mtl.run.entry import run

    full = run([*common, f"run.root={tmp_path / 'full'}"])
    killed = subprocess.run([sys.executable, "-m", "mtl.train", *common, f"run.root={tmp_path / 'resumed'}",
                             kill_after_epoch(0)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    part = tmp_path / "resumed" / "synthetic" / method / "seed5"
    assert not (part / "summary.json").exists() and (part / "checkpoint.pt").exists()
    resumed = run([*common, f"run.root={tmp_path / 'resumed'}"])
    assert _metrics_without_timing(resumed) == _metrics_without_timing(full)
    a, b = json.loads((full / "summary.json").read_text()), json.loads((resumed / "summary.json").read_text())
    assert (a["metrics"], a["delta_p"], a["steps"]) == (b["metrics"], b["delta_p"], b["steps"])
