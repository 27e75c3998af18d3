"""The command line as a user meets it: missing data says how to get it; W&B runs offline."""
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("bench,hint", [("nyuv2", "make data-nyuv2"), ("cityscapes", "make data-cityscapes"),
                                        ("office31", "OFFICE31_ROOT")])
def test_missing_dataset_exits_with_instructions(tmp_path, bench, hint):
    r = subprocess.run([sys.executable, "-m", "mtl.train", f"benchmark={bench}", "logger=none", "device=cpu",
                        f"benchmark.build.root={tmp_path / 'nothing'}", f"run.root={tmp_path / 'runs'}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "DatasetNotFound" in r.stderr and hint in r.stderr and str(tmp_path / "nothing") in r.stderr
    assert "Traceback" not in r.stderr


def test_wandb_logger_writes_offline_run(tmp_path, monkeypatch):
    from mtl.run.entry import run

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = run(["benchmark=synthetic", "method=ew", "trainer.epochs=1", "benchmark.build.n_train=128",
                "trainer.progress=false", f"run.root={tmp_path / 'runs'}", "logger=wandb",
                f"logger.dir={tmp_path / 'wandb'}"])
    assert (path / "summary.json").exists()
    offline = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].glob("*.wandb"))
    assert os.environ.get("WANDB_MODE") is None
