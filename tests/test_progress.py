"""Training progress: a bar on a terminal, plain lines (no carriage returns) anywhere else."""
import io
import os
import subprocess
import sys
from pathlib import Path

from mtl.run.progress import Progress

ROOT = Path(__file__).resolve().parents[1]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _epoch(stream, total=10, log_every=None, **kw):
    p = Progress(total, epoch=1, epochs=4, task_names=["a", "b"], log_every=log_every, stream=stream, **kw)
    for step in range(1, total + 1):
        p.update(1, losses=lambda s=step: [1.0 / s, 2.0 / s])
    p.close()
    return stream.getvalue()


def test_file_gets_one_plain_line_per_epoch():
    out = _epoch(io.StringIO())
    assert "\r" not in out and out.count("\n") == 1
    line = out.strip()
    assert line.startswith("[mtl] epoch 2/4 step 10/10")
    assert "loss a 0.1 b 0.2" in line and "ms/step" in line and "ETA" in line


def test_file_gets_a_line_every_n_steps():
    lines = _epoch(io.StringIO(), total=10, log_every=4).splitlines()
    assert [ln.split(" | ")[0] for ln in lines] == [
        "[mtl] epoch 2/4 step 4/10", "[mtl] epoch 2/4 step 8/10", "[mtl] epoch 2/4 step 10/10"]
    assert "loss a 0.25 b 0.5" in lines[0]


def test_terminal_gets_a_bar_and_disabled_shows_nothing():
    assert "\r" in _epoch(_Tty())
    assert _epoch(io.StringIO(), log_every=2, enabled=False) == ""
    assert _epoch(_Tty(), enabled=False) == ""


def test_eta_counts_remaining_epochs():
    p = Progress(10, epoch=0, epochs=3, stream=io.StringIO())
    p.start -= 10.0  # 10 s for the 10 steps of epoch 1 of 3: 20 steps left at 1 s/step
    p.update(10)
    p.close()
    assert "ETA 20s" in p.stream.getvalue() and "1000.0 ms/step" in p.stream.getvalue()


def test_training_with_stderr_in_a_file_has_no_carriage_returns(tmp_path):
    err = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(err, "w") as f:
        subprocess.run([sys.executable, "-m", "mtl.train", "benchmark=synthetic", "method=ew", "logger=none",
                        "trainer.epochs=2", "benchmark.build.n_train=256", "trainer.log_every_steps=2",
                        f"run.root={tmp_path / 'runs'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=f, check=True, timeout=300)
    text = err.read_text()
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("[mtl] epoch")]
    # 256 / 64 = 4 steps per epoch: lines at step 2 and at the end of each of the 2 epochs
    assert [ln.split(" | ")[0] for ln in lines] == ["[mtl] epoch 1/2 step 2/4", "[mtl] epoch 1/2 step 4/4",
                                                    "[mtl] epoch 2/2 step 2/4", "[mtl] epoch 2/2 step 4/4"]
