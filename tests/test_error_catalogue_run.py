"""Catalogue of user mistakes and faults around a run (config values, run directory files,
environment, numerics): each case is a real command with the exit status and the one-line message
a user sees, and no case changes or removes a finished result."""
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from mtl.train import EXIT_USER_ERROR

ROOT = Path(__file__).resolve().parents[1]
BASE = ["benchmark=synthetic", "benchmark.build.n_train=256", "logger=none", "trainer.progress=false",
        "trainer.epochs=2", "method=db_mtl"]
RUN = Path("synthetic") / "db_mtl" / "seed0"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}  # no key, no mode from outside
    env.update(WANDB_SILENT="true", WANDB_BASE_URL="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", WANDB_CONFIG_DIR="/nonexistent-wandb-config", **extra)
    return env


@dataclass
class Case:
    id: str
    args: list[str]
    message: list[str]                   # substrings of the one error line
    code: int = EXIT_USER_ERROR
    prepare: Callable[[Path], None] | None = None   # damages the run dir (a finished run is next to it)
    env: dict = field(default_factory=dict)
    one_line: bool = True
    base: list[str] = field(default_factory=lambda: list(BASE))  # the command before `args`


def truncate_checkpoint(root):
    p = root / RUN / "checkpoint.pt"
    p.write_bytes(p.read_bytes()[:1000])


def random_checkpoint(root):
    (root / RUN / "checkpoint.pt").write_bytes(os.urandom(4096))


def foreign_checkpoint(root):
    shutil.copy(root / "other" / "checkpoint.pt", root / RUN / "checkpoint.pt")


def corrupt_summary(root):
    (root / RUN / "summary.json").write_text('{"delta_p": 1.2, "metr')


def corrupt_metrics(root):
    (root / RUN / "metrics.jsonl").write_text('{"epoch": 0, "tr\n')


CASES = [
    # config values
    Case("epochs-zero", ["trainer.epochs=0"], ["trainer.epochs=0", "integer >= 1"]),
    Case("epochs-negative", ["trainer.epochs=-1"], ["trainer.epochs=-1"]),
    Case("epochs-text", ["trainer.epochs=abc"], ["trainer.epochs='abc'"]),
    Case("seed-negative", ["seed=-1"], ["seed=-1", ">= 0"]),
    Case("steps-zero", ["trainer.max_steps_per_epoch=0"], ["trainer.max_steps_per_epoch=0"]),
    Case("checkpoint-every-zero", ["trainer.checkpoint_every=0"], ["trainer.checkpoint_every"]),
    Case("selection-typo", ["benchmark.protocol.selection=best_vall"], ["best_vall", "best_val, best_test, last10"]),
    Case("report-typo", ["benchmark.protocol.report=[last11]"], ["last11"]),
    Case("grad-engine", ["grad_engine=bogus"], ["grad_engine='bogus'", "loop, batched, auto"]),
    Case("lr-negative", ["benchmark.protocol.optimizer.lr=-0.1"], ["benchmark.protocol.optimizer.lr=-0.1", "non-negative"]),
    Case("batch-size-zero", ["benchmark.build.batch_size=0"], ["benchmark.build.batch_size=0"]),
    Case("threads-zero", ["threads=0"], ["threads=0"]),
    Case("device-cuda-no-gpu", ["device=cuda"], ["device=cuda", "no usable CUDA GPU", "device=cpu"]),
    Case("device-typo", ["device=gpu0"], ["device='gpu0'", "auto, cpu, cuda"]),
    Case("gpu-benchmark-no-gpu", ["benchmark=nyuv2"], ["NoGPU", "pass device=cpu"], base=["logger=none"]),
    Case("method-unknown", ["method=nosuch"], ["method=nosuch", "choose one of", "db_mtl"]),
    Case("benchmark-unknown", ["benchmark=nosuch"], ["benchmark=nosuch", "synthetic"], base=["logger=none"]),
    Case("method-key-typo", ["method.betta=0.5"], ["method.betta", "db_mtl has no hyperparameter 'betta'", "beta"]),
    Case("method-key-typo-plus", ["+method.betta=0.5"], ["method=db_mtl", "betta"]),
    Case("key-typo", ["trainer.epocs=3"], ["trainer.epocs", "did you mean trainer.epochs"]),
    Case("run-key-typo", ["run.forse=true"], ["did you mean run.force"]),
    Case("override-syntax", ["method.beta"], ["method.beta", "missing EQUAL"]),
    Case("loss-transform", ["method.loss_transform=sqrt"], ["sqrt", "identity"]),
    Case("beta-text", ["method.beta=abc"], ["method=db_mtl", "abc"]),
    # logger
    Case("logger-unknown-mode", ["logger=wandb", "logger.mode=bogus"], ["logger.mode='bogus'", "offline"]),
    Case("wandb-online-no-key", ["logger=wandb", "logger.mode=online"], ["no W&B API key", "logger.mode=offline"]),
    Case("wandb-online-no-network", ["logger=wandb", "logger.mode=online", "logger.init_timeout=5",
                                     "logger.dir={root}/wandb"], ["W&B could not be reached", "logger.mode=offline"],
         env={"WANDB_API_KEY": "x" * 40}),
    # damaged run files (the run was killed after epoch 0; the summary case uses a finished run)
    Case("checkpoint-truncated", [], ["checkpoint.pt", "cannot be read", "delete it"], prepare=truncate_checkpoint),
    Case("checkpoint-random-bytes", [], ["checkpoint.pt", "cannot be read"], prepare=random_checkpoint),
    Case("checkpoint-other-model", [], ["checkpoint.pt", "does not fit", "run.force=true"], prepare=foreign_checkpoint),
    Case("summary-corrupt", [], ["summary.json", "damaged", "run.force=true"], prepare=corrupt_summary),
    Case("metrics-corrupt-is-rebuilt", [], [], code=0, prepare=corrupt_metrics),
    # environment
    Case("results-not-writable", ["run.root=/sys/mtl-runs"], ["cannot create /sys/mtl-runs", "run.root="]),
    Case("results-under-a-file", ["run.root=/dev/null/runs"], ["cannot create /dev/null/runs"]),
    # numerics
    Case("nan-loss", ["benchmark.protocol.optimizer.lr=1e20", "run.tag=_nan"],
         ["non-finite loss", "run.force=true", "run.tag"]),
]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A results root with a killed run (checkpoint, no summary), a finished run (seed 1) and a
    checkpoint of a model of another size."""
    root = tmp_path_factory.mktemp("catalogue")
    env = _env(WANDB_MODE="disabled")
    run = lambda *a: subprocess.run([sys.executable, "-m", "mtl.train", *BASE, f"run.root={root}", *a],  # noqa: E731
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run("trainer.kill_after_epoch=0").returncode == -9
    assert run("seed=1").returncode == 0
    other = run("benchmark.build.hidden=16", "run.tag=_other", "trainer.kill_after_epoch=0")
    assert other.returncode == -9, other.stderr[-1500:]
    (root / "other").mkdir()
    shutil.copy(root / "synthetic" / "db_mtl_other" / "seed0" / "checkpoint.pt", root / "other")
    return root


def digest(root: Path) -> dict[str, str]:
    finished = root / "synthetic" / "db_mtl" / "seed1"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(finished.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error_catalogue(case, campaign, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(campaign, root)
    if case.prepare is not None:
        case.prepare(root)
    before = digest(root)
    args = [a.replace("{root}", str(root)) for a in case.args]
    if not any(a.startswith("run.root=") for a in args):
        args.append(f"run.root={root}")
    r = subprocess.run([sys.executable, "-m", "mtl.train", *case.base, *args], cwd=ROOT,
                       env=_env(**({"WANDB_MODE": "disabled"} if "logger=wandb" not in case.args else {}), **case.env),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == case.code, r.stdout[-1500:] + r.stderr[-1500:]
    if case.code:
        lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("wandb:")]
        assert lines and lines[-1].startswith("error:"), r.stderr[-1500:]
        if case.one_line:
            assert len([line for line in lines if not line.startswith("[")]) == 1, r.stderr[-1500:]
        for text in case.message:
            assert text in lines[-1], (text, lines[-1])
        assert "Traceback" not in r.stderr
    assert digest(root) == before  # the finished run next to it is untouched
