"""The error catalogue: plausible mistakes and faults, each a real command or API call, with the exit
code (commands) or exception type (API) and a substring of the one-line message that must come out.

Add a case by appending to CLI_CASES (a `python -m mtl.train` command), SCRIPT_CASES (a script
under scripts/) or API_CASES (a call that must raise). A `setup(tmp)` prepares files (damaged data,
finished runs) and returns {"args": [...], "env": {...}}; for a CLI case its args replace the default
small synthetic benchmark. Every command runs beside a finished run whose files are hashed before
and after: no case may change or remove a finished result.

RUN_CASES (at the end) cover the run itself: config values, damaged run-directory files, the
environment (unwritable results folder, W&B online without key or network) and numerics.
User errors exit with status 2 and print one `error: <Type>: <where>: <what>; <fix>` line.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from mtl import methods
from mtl.errors import (DatasetDamaged, InvalidCombination, InvalidLoss, InvalidValue, MissingEpochStatistics,
                        SolverError, UnknownName)
from mtl.run.testing import callbacks, kill_after_epoch, poison_after_steps

REPO = Path(__file__).resolve().parents[1]
LEAD_CLI = "needs CLI handler (lead): exit code 2 and a plain 'error: ...' line"
COMMON = ["logger=none", "trainer.progress=false", "trainer.epochs=1"]
# a small synthetic benchmark: the default of every CLI case whose setup brings no other benchmark
SYNTHETIC = ["benchmark=synthetic", "benchmark.build.n_train=128", "benchmark.build.n_val=64",
             "benchmark.build.n_test=64"]


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str] = field(default_factory=list)   # CLI overrides, or script path + arguments
    rc: int = 2                                       # expected exit code (commands)
    message: str = ""                                 # substring of the error line
    setup: Callable[[Path], dict[str, Any]] | None = None  # -> {"args": [...], "env": {...}}
    xfail: str | None = None


@dataclass(frozen=True)
class ApiCase:
    id: str
    call: Callable[[Path], Any]
    raises: type[BaseException]
    message: str


# ---- helpers ------------------------------------------------------------------------------------
def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (relative path -> hex)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished synthetic EW run (summary.json, metrics.jsonl, checkpoint.pt, config.yaml)."""
    from mtl.run.entry import run

    root = tmp_path_factory.mktemp("finished") / "runs"
    return run([*COMMON, *SYNTHETIC, f"run.root={root}", "method=ew", "seed=0"])


def place_finished(finished_run: Path, root: Path, seeds=(0,)) -> list[Path]:
    out = []
    for s in seeds:
        dest = root / "synthetic" / "ew" / f"seed{s}"
        shutil.copytree(finished_run, dest)
        if s != 0:
            summary = json.loads((dest / "summary.json").read_text())
            summary["seed"] = s
            (dest / "summary.json").write_text(json.dumps(summary))
        out.append(dest)
    return out


def run_command(argv: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # tracebacks only if a case asks
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="disabled", **env_extra)
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def assert_one_error_line(r: subprocess.CompletedProcess, rc: int, message: str) -> None:
    assert r.returncode == rc, f"exit code {r.returncode} != {rc}; stderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, f"want one 'error:' line, got:\n{r.stderr[-3000:]}"
    assert message in errors[0], f"{message!r} not in {errors[0]!r}"


# ---- setups -------------------------------------------------------------------------------------
def damaged_nyuv2(tmp: Path, workers: int = 1) -> dict[str, Any]:
    from mtl.datasets import nyuv2

    root = nyuv2.write_fixture(tmp / "nyuv2", n_train=4, n_val=2, height=32, width=64)
    bad = root / "train" / "depth" / "2.npy"
    bad.write_bytes(bad.read_bytes()[:90])  # truncated inside the header, as an interrupted copy leaves it
    b = "benchmark.build"
    return {"args": ["benchmark=nyuv2", "device=cpu", f"{b}.root={root}", f"{b}.image_size=null", f"{b}.split_sizes=null",
                     f"{b}.num_workers={workers}", f"{b}.train_batch_size=2", f"{b}.test_batch_size=2",
                     f"{b}.pretrained=false", f"{b}.backbone=tiny", f"{b}.dilated=false", f"{b}.head_channels=8"],
            "bad": bad}


def offline_env(tmp: Path) -> dict[str, Any]:
    # every URL goes through a proxy on a closed local port: fails at once, never reaches the network
    proxy = "http://127.0.0.1:9"
    return {"args": ["--root", str(tmp / "nyuv2_dl")],
            "env": {"https_proxy": proxy, "http_proxy": proxy, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy,
                    "no_proxy": "", "NO_PROXY": ""}}


# ---- `python -m mtl.train` ----------------------------------------------------------------------
CLI_CASES = [
    Case("stl-task-out-of-range", ["method=stl", "method.task=7"],
         message="method.task: stl needs a task index from 0 to 2 (3 tasks), got 7"),
    Case("beta-not-a-number", ["method=db_mtl", "method.beta=abc"],
         message="method.beta: db_mtl needs a number in [0, 1), got 'abc'"),
    Case("misspelled-key-appended", ["method=db_mtl", "+method.betta=0.5"],
         message="method.betta: db_mtl has no hyperparameter 'betta' (did you mean method.beta?)"),
    Case("alpha-unknown-choice", ["method=db_mtl", "method.alpha=foo"],
         message="method.alpha: db_mtl needs one of max, min, mean, median or a number > 0"),
    Case("combo-unknown-loss-part", ["method=combo", "method.loss.name=nosuch"],
         message="method.loss.name: combo has no loss-weighting method 'nosuch'"),
    Case("dwa-no-training-step", ["method=dwa", "trainer.max_steps_per_epoch=0", "trainer.epochs=3"],
         message="max_steps_per_epoch"),
    Case("truncated-npy-in-worker", setup=damaged_nyuv2,
         message="2.npy: not a readable .npy array"),
]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, finished_run) -> dict[str, tuple[subprocess.CompletedProcess, dict, dict]]:
    """Every CLI case run once, a few at a time (each is a fresh Python process that mostly waits on
    imports): case id -> (result, hashes of the run root before, after)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case: Case):
        tmp = tmp_path_factory.mktemp(case.id)
        root = tmp / "runs"
        place_finished(finished_run, root)
        before = digest(root)
        extra = case.setup(tmp) if case.setup else {}
        bench = extra.get("args", SYNTHETIC)  # a setup's arguments replace the synthetic benchmark
        argv = ["-m", "mtl.train", *COMMON, f"run.root={root}", *bench, *case.args]
        r = run_command(argv, extra.get("env", {}), tmp)
        return case.id, (r, before, digest(root))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, CLI_CASES))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CLI_CASES])
def test_cli(case: Case, cli_results):
    r, before, after = cli_results[case.id]
    assert {k: after.get(k) for k in before} == before, "a finished result was changed or removed"
    if case.xfail and r.returncode == 1:  # today's handler: right message, generic exit code 1
        assert_one_error_line(r, 1, case.message)
        pytest.xfail(case.xfail)
    assert_one_error_line(r, case.rc, case.message)


# ---- scripts ------------------------------------------------------------------------------------
def corrupt_summary_among_good(tmp: Path, finished_run: Path) -> dict[str, Any]:
    root = tmp / "runs"
    good = place_finished(finished_run, root, seeds=(0, 1))
    bad = root / "synthetic" / "pcgrad" / "seed0"
    bad.mkdir(parents=True)
    (bad / "summary.json").write_text('{"benchmark": "synthetic", "method": "pcgrad", "se')  # torn write
    return {"args": ["synthetic", "--root", str(root), "--out", str(tmp / "tables"), "--no-plots", "logger=none"],
            "good": good, "bad": bad / "summary.json"}


def test_tables_skip_a_corrupt_summary_and_go_on(tmp_path, finished_run):
    extra = corrupt_summary_among_good(tmp_path, finished_run)
    before = digest(tmp_path / "runs")
    r = run_command(["scripts/tables.py", *extra["args"]], {}, REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    warn = [ln for ln in r.stderr.splitlines() if "damaged summary" in ln]
    assert len(warn) == 1 and str(extra["bad"]) in warn[0] and "re-run" in warn[0]
    import pandas as pd

    table = pd.read_csv(tmp_path / "tables" / "synthetic.csv").set_index("name")
    assert table.loc["ew", "seeds"] == 2 and table.loc["ew", "status"] == "ok"  # the good runs still count
    assert "pcgrad" not in table.index or table.loc["pcgrad", "seeds"] == 0
    assert digest(tmp_path / "runs") == before


def workflow_root(tmp: Path) -> dict[str, Any]:
    """Workflow runs and outputs go to `tmp` (nothing may be written there: the case must fail first)."""
    return {"args": ["logger=none", f"run.root={tmp / 'wf_runs'}"], "nothing_in": tmp / "wf_runs"}


SCRIPT_CASES = [
    Case("compare-unknown-method", ["scripts/compare.py", "--method", "nosuch", "--bench", "synthetic"],
         message="--method 'nosuch': there is no configs/method/nosuch.yaml; choose one of aligned_mtl"),
    Case("compare-unknown-benchmark", ["scripts/compare.py", "--method", "ew", "--bench", "nosuch", "--no-run"],
         message="--bench 'nosuch': there is no configs/benchmark/nosuch.yaml; choose one of cityscapes"),
    Case("download-offline", ["scripts/download_data.py", "nyuv2"], rc=1, setup=offline_env,
         message="every download source failed"),
    # workflows check every job once before the first starts (issue #20 §4)
    Case("sweep-gpu-benchmark-on-cpu", ["scripts/sweep.py", "beta", "--bench", "nyuv2", "--seeds", "0,1,2",
                                        "--out", "/nonexistent-sweeps-out"], setup=workflow_root,
         message="error: NoGPU: device=auto found no GPU"),
    Case("compare-invalid-value", ["scripts/compare.py", "--method", "db_mtl", "--bench", "synthetic",
                                   "method.beta=2"], setup=workflow_root,
         message="error: InvalidValue: method.beta: db_mtl needs a number in [0, 1), got 2"),
    Case("reproduce-unknown-method", ["scripts/reproduce.py", "demo", "--methods", "ew,nosuch"], setup=workflow_root,
         message="error: UnknownName: method=nosuch: no such method"),
    Case("compare-slurm-without-slurm", ["scripts/compare.py", "--method", "ew", "--bench", "synthetic",
                                         "--launcher", "slurm"], setup=workflow_root,
         message="error: InvalidValue: launcher=slurm: there is no SLURM here"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in SCRIPT_CASES])
def test_script(case: Case, tmp_path, finished_run):
    root = tmp_path / "runs"
    place_finished(finished_run, root)
    before = digest(root)
    extra = case.setup(tmp_path) if case.setup else {}
    r = run_command([*case.args, *extra.get("args", [])], extra.get("env", {}), REPO)
    assert digest(root) == before
    assert r.returncode == case.rc, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert case.message in r.stderr, r.stderr[-3000:]
    if "nothing_in" in extra:  # a workflow that cannot run writes nothing (no run, no CSV, no plot)
        assert not extra["nothing_in"].exists() and not Path("/nonexistent-sweeps-out").exists()
        assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1, r.stderr[-3000:]
    assert len(r.stdout.splitlines()) + len(r.stderr.splitlines()) < 30  # not the 405 lines of a Hydra dump


def test_tables_skip_a_summary_of_the_wrong_types(tmp_path, finished_run):
    """Valid JSON, wrong types (metrics a list, seed a string): that run is skipped with one warning
    line; the table of every benchmark is still written."""
    root = tmp_path / "runs"
    place_finished(finished_run, root, seeds=(0, 1))
    for method, edit in (("uw", {"metrics": [1, 2]}), ("rlw", {"seed": "zero"})):
        bad = root / "synthetic" / method / "seed0"
        shutil.copytree(finished_run, bad)
        summary = json.loads((bad / "summary.json").read_text())
        summary.update(edit, method=method)
        (bad / "summary.json").write_text(json.dumps(summary))
    before = digest(root)
    r = run_command(["scripts/tables.py", "--root", str(root), "--out", str(tmp_path / "tables"), "--no-plots",
                     "logger=none"], {}, REPO)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    warnings = [ln for ln in r.stderr.splitlines() if "damaged summary" in ln]
    assert len(warnings) == 2, r.stderr[-3000:]
    assert any("metrics is a JSON list" in w for w in warnings) and any("seed is 'zero'" in w for w in warnings)
    import pandas as pd

    table = pd.read_csv(tmp_path / "tables" / "synthetic.csv").set_index("name")
    assert table.loc["ew", "seeds"] == 2
    assert digest(root) == before


def test_compare_unknown_method_is_one_line(tmp_path):
    r = run_command(["scripts/compare.py", "--method", "nosuch", "--bench", "synthetic"], {}, REPO)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1


# ---- API calls ----------------------------------------------------------------------------------
def tiny_step(name: str, losses: list[float], num_tasks: int = 3, **kw):
    """One `method.backward` on a small linear model whose losses are replaced by `losses` + 0·model."""
    torch.manual_seed(0)
    m = methods.create(name, num_tasks=num_tasks, **kw)
    enc, heads = torch.nn.Linear(4, 4), torch.nn.ModuleList(torch.nn.Linear(4, 1) for _ in range(num_tasks))
    h = enc(torch.randn(8, 4))
    model_part = torch.stack([heads[t](h).pow(2).mean() for t in range(num_tasks)])
    losses = torch.tensor(losses) + 0 * model_part
    m.on_epoch_start(0)
    return m.backward(losses, list(enc.parameters()), list(heads.parameters()))


def dwa_epoch_without_steps(tmp):
    m = methods.create("dwa", num_tasks=3)
    m.on_epoch_start(0)
    m.on_epoch_end(0)  # the trainer ran zero steps (trainer.max_steps_per_epoch=0, or an empty loader)


def list_losses(tmp):
    m = methods.create("ew", num_tasks=3)
    p = torch.nn.Parameter(torch.ones(3))
    m.backward([p[0], p[1], p[2]], [p])


def excess_mtl_overflow(tmp):
    torch.manual_seed(0)
    m = methods.create("excess_mtl", num_tasks=2, robust_step_size=1e6)
    G1 = torch.tensor([[1.0, 0.0], [0.0, 1e-3]])
    m.aggregate(G1, torch.ones(2))
    m.aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2))


def read_npy_sample(tmp):
    from mtl.datasets import nyuv2
    from mtl.datasets.dense import DenseDataset

    extra = damaged_nyuv2(tmp, workers=0)
    ds = DenseDataset(nyuv2.LAYOUT, extra["bad"].parents[2], "train")
    ds[2]


def npy_in_worker(tmp):
    from torch.utils.data import DataLoader
    from mtl.datasets import nyuv2
    from mtl.datasets.dense import DenseDataset

    extra = damaged_nyuv2(tmp)
    ds = DenseDataset(nyuv2.LAYOUT, extra["bad"].parents[2], "train")
    list(DataLoader(ds, batch_size=1, num_workers=1))


def verify_damaged_download(tmp):
    """`download_data.py nyuv2 --verify-only` on a copy with one damaged file (not the first sample)."""
    import dataclasses
    from mtl.datasets import nyuv2

    extra = damaged_nyuv2(tmp, workers=0)
    layout = dataclasses.replace(nyuv2.LAYOUT, split_sizes={"train": 4, "val": 2}, image_size=(32, 64))
    layout.verify(extra["bad"].parents[2], full=True)


def random_bytes_npy(tmp):
    from mtl.datasets import nyuv2
    from mtl.datasets.dense import DenseDataset

    root = nyuv2.write_fixture(tmp / "nyuv2", n_train=2, n_val=1, height=16, width=32)
    (root / "train" / "image" / "1.npy").write_bytes(np.random.default_rng(0).bytes(500))
    DenseDataset(nyuv2.LAYOUT, root, "train")[1]


def damaged_jpeg(tmp, random_bytes=False):
    from mtl.datasets.office import load_office, write_fixture

    lists = write_fixture(tmp / "office", "office31", num_classes=2, per_class=[(2, 1, 1)] * 3)
    jpg = sorted((tmp / "office" / "dslr").rglob("*.jpg"))[0]
    jpg.write_bytes(np.random.default_rng(0).bytes(300) if random_bytes else jpg.read_bytes()[:200])
    data = load_office("office31", tmp / "office", image_size=16, splits_dir=lists)
    ds = data["train"]["dslr"]
    for i in range(len(ds)):
        ds[i]


def qm9_cache(tmp, damage):
    import mtl.datasets.qm9 as Q

    ds = Q.QM9(root=tmp / "qm9", limit=20, progress=False)
    pt, info = (Path(p) for p in ds.processed_paths)
    damage(pt, info)
    Q.QM9(root=tmp / "qm9", limit=20, progress=False)


def qm9_graphs_cache_truncated(tmp):
    import mtl.datasets.qm9 as Q

    pre = Q.PrecomputedGraphs(Q.QM9(root=tmp / "qm9", limit=20, progress=False), "complete", progress=False)
    pre.path.write_bytes(pre.path.read_bytes()[:999])
    Q.PrecomputedGraphs(Q.QM9(root=tmp / "qm9", limit=20, progress=False), "complete", progress=False)


def qm9_root_is_a_file(tmp):
    import mtl.datasets.qm9 as Q

    f = tmp / "qm9_here"
    f.write_text("not a folder")
    old = os.environ.get("QM9_ROOT")
    os.environ["QM9_ROOT"] = str(f)
    try:
        Q.QM9(limit=20, progress=False)
    finally:
        os.environ.pop("QM9_ROOT") if old is None else os.environ.__setitem__("QM9_ROOT", old)


def create(name, num_tasks=3, **kw):
    return lambda tmp: methods.create(name, num_tasks=num_tasks, **kw)


API_CASES = [
    # hyperparameters (declared next to each method, checked by methods.create)
    ApiCase("unknown-key", create("db_mtl", betta=0.5), InvalidValue,
            "method.betta: db_mtl has no hyperparameter 'betta' (did you mean method.beta?); db_mtl takes "
            "method.alpha, method.balance_grads, method.beta"),
    ApiCase("wrong-type", create("db_mtl", beta="abc"), InvalidValue,
            "method.beta: db_mtl needs a number in [0, 1), got 'abc'; e.g. method.beta=0.9 (the default)"),
    ApiCase("out-of-range", create("db_mtl", beta=1.5), InvalidValue, "db_mtl needs a number in [0, 1), got 1.5"),
    ApiCase("unknown-choice", create("db_mtl", alpha="foo"), InvalidValue,
            "method.alpha: db_mtl needs one of max, min, mean, median or a number > 0, got 'foo'"),
    ApiCase("unknown-transform", create("pcgrad", loss_transform="sqrt"), InvalidValue,
            "method.loss_transform: pcgrad needs one of identity, log, got 'sqrt'"),
    ApiCase("stl-task", create("stl", task=7), InvalidValue,
            "method.task: stl needs a task index from 0 to 2 (3 tasks), got 7"),
    ApiCase("combo-unknown-part", create("combo", loss={"name": "nosuch"}), UnknownName,
            "method.loss.name: combo has no loss-weighting method 'nosuch'; choose one of dwa, ew"),
    ApiCase("combo-grad-part-as-loss", create("combo", loss="pcgrad"), InvalidCombination,
            "is not a loss-weighting method"),
    ApiCase("combo-part-bad-value", create("combo", loss={"name": "igbv1", "base_epoch": -1}), InvalidValue,
            "method.loss.base_epoch: igbv1 needs an integer >= 0, got -1"),
    ApiCase("combo-part-rep-grad", create("combo", grad={"name": "mgda", "rep_grad": True}), InvalidValue,
            "method.grad.rep_grad: combo sets rep_grad for its parts; set method.rep_grad on the combination instead"),
    ApiCase("nash-one-task", create("nash_mtl", num_tasks=1), InvalidValue,
            "num_tasks: nash_mtl needs at least 2 tasks, got num_tasks=1"),
    ApiCase("unknown-method", create("nosuch"), UnknownName, "method: unknown method 'nosuch'; choose one of"),
    ApiCase("negative-lr-sdmgrad", create("sdmgrad", lr=-1.0), InvalidValue, "method.lr: sdmgrad needs a number > 0"),
    ApiCase("zero-lr-famo", create("famo", w_lr=0.0), InvalidValue, "method.w_lr: famo needs a number > 0, got 0.0"),
    ApiCase("mtadam-two-betas", create("mtadam", betas=[0.9, 0.999]), InvalidValue,
            "method.betas: mtadam needs a list of 3 entries"),
    ApiCase("cagrad-rescale", create("cagrad", rescale=3), InvalidValue, "method.rescale: cagrad needs one of 0, 1, 2"),
    ApiCase("bool-for-number", create("gradvac", beta=True), InvalidValue, "method.beta: gradvac needs a number"),
    ApiCase("igbv2-base-after-update", create("igbv2", base_epoch=3, update_after=3), InvalidValue,
            "igbv2 needs base_epoch (3) < update_after (3)"),
    # losses handed to `backward`
    ApiCase("losses-as-list", list_losses, InvalidLoss, "losses must be a torch.Tensor of shape (3,), got a list"),
    ApiCase("losses-wrong-shape", lambda tmp: methods.create("ew", num_tasks=3).backward(torch.ones(2), []),
            InvalidLoss, "losses must have shape (3,) (3 tasks), got (2,)"),
    ApiCase("negative-loss-db-mtl", lambda tmp: tiny_step("db_mtl", [1.0, -0.5, 2.0]), InvalidLoss,
            "db_mtl, task 1: loss -0.5 is negative but the method takes its logarithm"),
    ApiCase("negative-loss-si", lambda tmp: tiny_step("si", [-1.0, 0.5, 2.0]), InvalidLoss, "si, task 0: loss -1"),
    ApiCase("negative-loss-igbv1", lambda tmp: tiny_step("igbv1", [1.0, 0.5, -2.0]), InvalidLoss,
            "igbv1, task 2: loss -2"),
    ApiCase("negative-loss-log-transform", lambda tmp: tiny_step("pcgrad", [1.0, -3.0, 2.0], loss_transform="log"),
            InvalidLoss, "make the task loss non-negative (e.g. add a constant) or run with "
                         "method.loss_transform=identity"),
    ApiCase("negative-loss-stch", lambda tmp: tiny_step("stch", [1.0, -3.0, 2.0]), InvalidLoss,
            "stch, task 1: loss -3 is negative"),
    ApiCase("negative-loss-combo", lambda tmp: tiny_step("combo", [1.0, -3.0, 2.0],
                                                         loss={"name": "igbv1"}, grad={"name": "pcgrad"}),
            InvalidLoss, "igbv1, task 1: loss -3"),
    # epoch statistics and solvers
    ApiCase("dwa-no-step", dwa_epoch_without_steps, MissingEpochStatistics,
            "dwa: no training step seen in epoch 0"),
    ApiCase("excess-mtl-overflow", excess_mtl_overflow, SolverError, "lower method.robust_step_size"),
    # damaged data files
    ApiCase("truncated-npy", read_npy_sample, DatasetDamaged, "2.npy: not a readable .npy array"),
    ApiCase("truncated-npy-worker", npy_in_worker, DatasetDamaged, "make data-nyuv2"),
    ApiCase("verify-finds-damaged-file", verify_damaged_download, DatasetDamaged,
            "train/depth/2.npy: not a readable .npy array"),
    ApiCase("random-bytes-npy", random_bytes_npy, DatasetDamaged, "1.npy: not a readable .npy array"),
    ApiCase("truncated-jpeg", damaged_jpeg, DatasetDamaged, "not a readable image"),
    ApiCase("random-bytes-jpeg", lambda tmp: damaged_jpeg(tmp, random_bytes=True), DatasetDamaged,
            "run `make data-office31` to extract it again"),
    ApiCase("qm9-cache-truncated", lambda tmp: qm9_cache(tmp, lambda pt, info: pt.write_bytes(pt.read_bytes()[:999])),
            DatasetDamaged, "cannot be read"),
    ApiCase("qm9-cache-random-bytes",
            lambda tmp: qm9_cache(tmp, lambda pt, info: pt.write_bytes(np.random.default_rng(1).bytes(4096))),
            DatasetDamaged, "make data-qm9"),
    ApiCase("qm9-cache-info-damaged", lambda tmp: qm9_cache(tmp, lambda pt, info: info.write_text("{")),
            DatasetDamaged, "delete both files"),
    ApiCase("qm9-graphs-cache-truncated", qm9_graphs_cache_truncated, DatasetDamaged,
            "delete it (rm "),
    ApiCase("qm9-root-is-a-file", qm9_root_is_a_file, InvalidValue, "is a file, but QM9 needs a folder"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in API_CASES])
def test_api(case: ApiCase, tmp_path):
    with pytest.raises(case.raises) as err:
        case.call(tmp_path)
    msg = str(err.value)
    assert case.message in msg, msg
    assert "\n" not in msg and "Traceback" not in msg


def test_catalogue_size():
    assert len(CLI_CASES) + len(SCRIPT_CASES) + len(API_CASES) + 1 >= 30


# ---- numerics that must stay finite -------------------------------------------------------------
def test_excess_mtl_zero_first_gradient_stays_finite():
    m = methods.create("excess_mtl", num_tasks=2)
    m.aggregate(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.ones(2))  # task 1: zero gradient at step 1
    for _ in range(3):
        agg = m.aggregate(torch.tensor([[1.0, 2.0], [0.5, -0.5]]), torch.ones(2))
        assert torch.isfinite(agg.weights).all() and agg.weights.sum().item() == pytest.approx(2.0)
    # risks r = sum g^2 / sqrt(sum of squared g so far): task 0 at step 1 is 1/1 + 4/2 = 3; task 1 gets
    # its normaliser at its first non-zero gradient (step 2): 0.25/0.5 + 0.25/0.5 = 1
    torch.testing.assert_close(m.initial_risk, torch.tensor([3.0, 1.0]), rtol=1e-5, atol=1e-6)


def test_negative_loss_under_log_would_flip_the_gradient():
    """Why negative losses are refused: d log(L + eps)/dL = 1/(L + eps) < 0 for L < -eps, so the
    shared update would point uphill for that task."""
    x = torch.tensor(-0.5, requires_grad=True)
    torch.log(x + 1e-8).backward()
    assert x.grad < 0


# ---- readers that skip a damaged file and go on -------------------------------------------------
def test_run_reader_skips_a_damaged_summary(tmp_path, finished_run, capsys):
    from mtl.report.runs import read_runs

    good = place_finished(finished_run, tmp_path / "runs", seeds=(0, 1))
    bad = tmp_path / "runs" / "synthetic" / "uw" / "seed0" / "summary.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"seed": 0, "metrics": {}}')  # valid JSON, but no delta_p / delta_m: hand-edited or foreign
    df = read_runs(tmp_path / "runs", required=("seed", "metrics", "delta_p", "delta_m"))
    assert sorted(df["path"]) == sorted(str(p) for p in good)
    err = capsys.readouterr().err
    assert f"{bad}: damaged summary (no delta_p, delta_m); skipped" in err and len(err.strip().splitlines()) == 1


def test_curves_stop_at_a_damaged_metrics_line(tmp_path, finished_run, capsys):
    from mtl.report.runs import read_metrics

    run = place_finished(finished_run, tmp_path / "runs")[0]
    first = (run / "metrics.jsonl").read_text().splitlines()[0]
    (run / "metrics.jsonl").write_text(first + "\n" + first[: len(first) // 2] + "\n")  # torn second line
    assert read_metrics(run) == [json.loads(first)]
    assert f"{run / 'metrics.jsonl'}:2: damaged line" in capsys.readouterr().err


# ---- the run: config values, run directory files, environment, numerics --------------------------
# Each case is `python -m mtl.train <RUN_BASE> <args>` in a copy of a results root holding a killed run
# (checkpoint, no summary), a finished run next to it (hashed before and after) and a checkpoint of a
# model of another size; `prepare` damages the killed run's files first.
from mtl.errors import EXIT_USER_ERROR  # noqa: E402

RUN_BASE = ["benchmark=synthetic", "benchmark.build.n_train=256", "logger=none", "trainer.progress=false",
        "trainer.epochs=2", "method=db_mtl"]
RUN_DIR = Path("synthetic") / "db_mtl" / "seed0"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}  # no key, no mode from outside
    env.update(WANDB_SILENT="true", WANDB_RUN_BASE_URL="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", WANDB_CONFIG_DIR="/nonexistent-wandb-config", **extra)
    return env


@dataclass
class RunCase:
    id: str
    args: list[str]
    message: list[str]                   # substrings of the one error line
    code: int = EXIT_USER_ERROR
    prepare: Callable[[Path], None] | None = None   # damages the run dir (a finished run is next to it)
    env: dict = field(default_factory=dict)
    one_line: bool = True
    base: list[str] = field(default_factory=lambda: list(RUN_BASE))  # the command before `args`
    check: Callable[[Path, Path], None] | None = None  # (copied root, the campaign root) -> asserts after the run


def truncate_checkpoint(root):
    p = root / RUN_DIR / "checkpoint.pt"
    p.write_bytes(p.read_bytes()[:1000])


def random_checkpoint(root):
    # random bytes; the first ones form a persistent-id opcode, on which torch.load fails with a
    # two-line UnpicklingError: the message must still be one line
    (root / RUN_DIR / "checkpoint.pt").write_bytes(b"P0\n" + np.random.default_rng(0).bytes(4093))


def foreign_checkpoint(root):
    shutil.copy(root / "other" / "checkpoint.pt", root / RUN_DIR / "checkpoint.pt")


def corrupt_summary(root):
    (root / RUN_DIR / "summary.json").write_text('{"delta_p": 1.2, "metr')


def corrupt_metrics(root):
    (root / RUN_DIR / "metrics.jsonl").write_text('{"epoch": 0, "tr\n')


def invalid_config_yaml(root):
    (root / RUN_DIR / "config.yaml").write_text("seed: [0\nmethod: {name: db_mtl\n")


def lock_folder(root):
    (root / RUN_DIR / ".lock").unlink(missing_ok=True)
    (root / RUN_DIR / ".lock").mkdir()


def hydra_run_file(root):
    shutil.rmtree(root / RUN_DIR / ".hydra_run", ignore_errors=True)
    (root / RUN_DIR / ".hydra_run").write_text("not a folder")


def run_dir_file(root):
    (root / "synthetic" / "db_mtl_file").mkdir(parents=True)
    (root / "synthetic" / "db_mtl_file" / "seed0").write_text("not a folder")


def typo_benchmark_file(root):
    """A benchmark YAML (synthetic's, on Hydra's search path) whose protocol misspells `selection`."""
    text = (REPO / "configs" / "benchmark" / "synthetic.yaml").read_text()
    assert "\n  selection: " in text
    (root / "configs" / "benchmark").mkdir(parents=True)
    (root / "configs" / "benchmark" / "typo.yaml").write_text(text.replace("\n  selection: ", "\n  selction: "))


RUN_CASES = [
    # config values
    RunCase("epochs-zero", ["trainer.epochs=0"], ["trainer.epochs=0", "integer >= 1"]),
    RunCase("epochs-negative", ["trainer.epochs=-1"], ["trainer.epochs=-1"]),
    RunCase("epochs-text", ["trainer.epochs=abc"], ["trainer.epochs='abc'"]),
    RunCase("seed-negative", ["seed=-1"], ["seed=-1", ">= 0"]),
    RunCase("steps-zero", ["trainer.max_steps_per_epoch=0"], ["trainer.max_steps_per_epoch=0"]),
    RunCase("checkpoint-every-zero", ["trainer.checkpoint_every=0"], ["trainer.checkpoint_every"]),
    RunCase("selection-typo", ["benchmark.protocol.selection=best_vall"], ["best_vall", "best_val, best_test, last10"]),
    RunCase("report-typo", ["benchmark.protocol.report=[last11]"], ["last11"]),
    RunCase("grad-engine", ["grad_engine=bogus"], ["grad_engine='bogus'", "loop, batched, auto"]),
    RunCase("lr-negative", ["benchmark.protocol.optimizer.lr=-0.1"], ["benchmark.protocol.optimizer.lr=-0.1", "non-negative"]),
    RunCase("batch-size-zero", ["benchmark.build.batch_size=0"], ["benchmark.build.batch_size=0"]),
    RunCase("threads-zero", ["threads=0"], ["threads=0"]),
    RunCase("device-cuda-no-gpu", ["device=cuda"], ["device=cuda", "no usable CUDA GPU", "device=cpu"]),
    RunCase("device-typo", ["device=gpu0"], ["device='gpu0'", "auto, cpu, cuda"]),
    RunCase("gpu-benchmark-no-gpu", ["benchmark=nyuv2"], ["NoGPU", "pass device=cpu"], base=["logger=none"]),
    RunCase("method-unknown", ["method=nosuch"], ["method=nosuch", "choose one of", "db_mtl"]),
    RunCase("benchmark-unknown", ["benchmark=nosuch"], ["benchmark=nosuch", "synthetic"], base=["logger=none"]),
    RunCase("method-key-typo", ["method.betta=0.5"], ["method.betta", "db_mtl has no hyperparameter 'betta'", "beta"]),
    RunCase("method-key-typo-plus", ["+method.betta=0.5"], ["method.betta", "did you mean method.beta"]),
    RunCase("key-typo", ["trainer.epocs=3"], ["trainer.epocs", "did you mean trainer.epochs"]),
    RunCase("run-key-typo", ["run.forse=true"], ["did you mean run.force"]),
    # keys the schema (mtl/config/schema.py) does not declare: added with `+`, at the top level, in a config file
    RunCase("key-typo-plus", ["+trainer.epoch=3"], ["trainer.epoch:", "did you mean trainer.epochs", "mtl/config/schema.py"]),
    RunCase("run-key-typo-plus", ["+run.forse=true"], ["run.forse:", "did you mean run.force"]),
    RunCase("top-level-key-typo", ["sede=1"], ["sede:", "did you mean seed"]),
    RunCase("top-level-key-typo-plus", ["+sede=1"], ["sede:", "did you mean seed"]),
    RunCase("protocol-key-typo-in-file", ["hydra.searchpath=[file://{root}/configs]", "benchmark=typo"],
            ["benchmark/typo.yaml", "benchmark.protocol.selction:", "did you mean benchmark.protocol.selection"],
            prepare=typo_benchmark_file),
    RunCase("bool-not-a-bool", ["run.force=maybe"], ["run.force", "'maybe' is not a valid bool"]),
    RunCase("override-syntax", ["method.beta"], ["method.beta", "missing EQUAL"]),
    RunCase("loss-transform", ["method.loss_transform=sqrt"], ["sqrt", "identity"]),
    RunCase("beta-text", ["method.beta=abc"], ["method.beta", "number in [0, 1)", "'abc'"]),
    # logger
    RunCase("logger-unknown-mode", ["logger=wandb", "logger.mode=bogus"], ["logger.mode='bogus'", "offline"]),
    RunCase("wandb-online-no-key", ["logger=wandb", "logger.mode=online"], ["no W&B API key", "logger.mode=offline"]),
    RunCase("wandb-online-no-network", ["logger=wandb", "logger.mode=online", "logger.init_timeout=5",
                                     "logger.dir={root}/wandb"], ["W&B could not be reached", "logger.mode=offline"],
         env={"WANDB_API_KEY": "x" * 40}),
    # damaged run files (the run was killed after epoch 0; the summary case uses a finished run)
    RunCase("checkpoint-truncated", [], ["checkpoint.pt", "cannot be read", "delete it"], prepare=truncate_checkpoint),
    RunCase("checkpoint-random-bytes", [], ["checkpoint.pt", "cannot be read"], prepare=random_checkpoint),
    # the checkpoint records its run (here db_mtl_other, a model of another size): refused before loading
    RunCase("checkpoint-other-model", [], ["checkpoint.pt", "a checkpoint of run synthetic/db_mtl_other/seed0",
            "run.force=true"], prepare=foreign_checkpoint),
    RunCase("summary-corrupt", [], ["summary.json", "damaged", "run.force=true"], prepare=corrupt_summary),
    RunCase("metrics-corrupt-is-rebuilt", [], [], code=0, prepare=corrupt_metrics),
    # environment
    RunCase("results-not-writable", ["run.root=/sys/mtl-runs"], ["cannot create /sys/mtl-runs", "run.root="]),
    RunCase("results-under-a-file", ["run.root=/dev/null/runs"], ["cannot create /dev/null/runs"]),
    # issue #20 §4: values, names and files that used to end in a traceback
    RunCase("seed-beyond-numpy", ["seed=4294967296"], ["seed=4294967296", "numpy's seed range"]),
    RunCase("stl-reference-zero", ["benchmark.protocol.reference.metrics.t0.mae=0", "run.tag=_ref0"],
            ["benchmark.protocol.reference.metrics.t0.mae=0", "cannot be 0"]),
    RunCase("device-mps", ["device=mps"], ["device=mps", "not supported", "use auto, cpu, cuda"]),
    RunCase("tag-unresolvable-interpolation", ["run.tag=_${nosuch}"], ["InvalidValue", "'nosuch' not found"]),
    RunCase("bare-lr-key", ["lr=0.01"], ["lr: no such config key", "did you mean benchmark.protocol.optimizer.lr"]),
    RunCase("method-name-typo", ["method=db_mtll"], ["UnknownName", "did you mean method=db_mtl"]),
    RunCase("benchmark-name-typo", ["benchmark=nyu"], ["UnknownName", "did you mean benchmark=nyuv2"],
            base=["logger=none"]),
    RunCase("config-yaml-invalid", [], ["config.yaml", "not valid YAML", "run.force=true"], prepare=invalid_config_yaml),
    RunCase("lock-is-a-folder", [], [".lock", "is a folder where the run needs a file"], prepare=lock_folder),
    RunCase("hydra-run-is-a-file", [], [".hydra_run", "is a file where the run needs a folder"],
            prepare=hydra_run_file),
    RunCase("run-dir-is-a-file", ["run.tag=_file"], ["a file of that name is in the way"], prepare=run_dir_file),
    RunCase("wandb-dir-is-a-file", ["logger=wandb", "logger.mode=offline", "logger.dir={root}/wandb_file",
                                    "run.tag=_wandbfile"], ["LoggerError", "is a file, not a folder"],
            prepare=lambda root: (root / "wandb_file").write_text("x")),
    RunCase("out-of-memory", ["run.tag=_oom", callbacks("mtl.run.testing.OutOfMemoryAfterSteps,steps:2")],
            ["OutOfMemory", "smaller batch", "trainer.precision=bf16"]),
    # numerics
    RunCase("nan-loss", ["benchmark.protocol.optimizer.lr=1e20", "run.tag=_nan"],
         ["non-finite loss", "run.force=true", "run.tag"]),
]


# ---- issue #20: nothing stale, nothing unsafe (more in tests/test_safety.py) ----------------------
class _Evil:
    """Runs `touch <marker>` when unpickled with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_checkpoint(root):
    torch.save({"model": {}, "epoch": 0, "history": [], "x": _Evil(root / "PWNED")}, root / RUN_DIR / "checkpoint.pt")


def nothing_ran(root, campaign):
    assert not (root / "PWNED").exists()


def seed1_checkpoint_in_seed0(root):
    shutil.copy(root / "synthetic" / "db_mtl" / "seed1" / "checkpoint.pt", root / RUN_DIR / "checkpoint.pt")


def db_mtl_checkpoint_in_pcgrad(root):
    """A killed pcgrad run (its own config.yaml) whose checkpoint was replaced by db_mtl's."""
    from omegaconf import OmegaConf

    from mtl.config.compose import compose

    pcgrad = root / "synthetic" / "pcgrad" / "seed0"
    pcgrad.mkdir(parents=True)
    cfg = compose([*RUN_BASE, "method=pcgrad", f"run.root={root}"])
    (pcgrad / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    shutil.copy(root / RUN_DIR / "checkpoint.pt", pcgrad / "checkpoint.pt")


def delete_config(run):
    return lambda root: (root / run / "config.yaml").unlink()


def checkpoint_unchanged(root, campaign):
    assert (root / RUN_DIR / "checkpoint.pt").read_bytes() == (campaign / RUN_DIR / "checkpoint.pt").read_bytes()


def nothing_outside(root, campaign):
    assert not list(root.parent.glob("escaped*")) and not list(root.parent.parent.glob("escaped*"))


SEED1 = Path("synthetic") / "db_mtl" / "seed1"
SAFETY_CASES = [
    # 1. security: files never run code, run directories never leave run.root
    RunCase("checkpoint-malicious-pickle", [], ["checkpoint.pt", "not a checkpoint of this suite", "posix.system",
            "nothing of it was run", "run.force=true"], prepare=malicious_checkpoint, check=nothing_ran),
    RunCase("tag-traversal", ["run.tag=/../../../../escaped"], ["run.tag='/../../../../escaped'", "outside run.root"],
            check=nothing_outside),
    RunCase("tag-traversal-onto-finished-run", ["run.tag=/../db_mtl", "run.force=true", "method=ew", "seed=1"],
            ["run.tag='/../db_mtl'", "outside run.root"]),
    RunCase("tag-subfolder", ["run.tag=/sub"], ["run.tag='/sub'", "letters, digits", "tables never look"]),
    RunCase("tag-dotdot", ["run.tag=.."], ["run.tag='..'"]),
    RunCase("tag-300-characters", ["run.tag=_" + "a" * 299], ["run.tag: 300 characters long", "at most 100"]),
    RunCase("run-dir-absolute-elsewhere", ["run.dir={root}/../escaped-run"],
            ["/../escaped-run'", "not inside run.root"], check=nothing_outside),
    # 2. wrong results with exit 0
    RunCase("finished-run-other-settings", ["seed=1", "method.beta=0.1", "benchmark.protocol.optimizer.lr=0.1"],
            ["seed1: finished with other settings", "benchmark.protocol.optimizer.lr", "method.beta", "run.force=true",
             "run.tag"]),
    RunCase("finished-run-more-epochs", ["seed=1", "trainer.epochs=3"], ["trainer.epochs: 2 -> 3", "run.force=true"]),
    RunCase("finished-run-config-deleted", ["seed=1"], ["config.yaml: missing beside summary.json", "run.force=true"],
            prepare=delete_config(SEED1)),
    RunCase("checkpoint-config-deleted", [], ["config.yaml: missing beside checkpoint.pt", "run.force=true"],
            prepare=delete_config(RUN_DIR)),
    RunCase("checkpoint-of-another-seed", [], ["a checkpoint of run synthetic/db_mtl/seed1", "not of this run "
            "(synthetic/db_mtl/seed0)", "run.force=true"], prepare=seed1_checkpoint_in_seed0),
    RunCase("checkpoint-of-another-method", ["method=pcgrad"], ["a checkpoint of run synthetic/db_mtl/seed0",
            "not of this run (synthetic/pcgrad/seed0)"], prepare=db_mtl_checkpoint_in_pcgrad),
    RunCase("experiment-unknown", ["experiment=nosuch"], ["experiment=nosuch", "no such experiment", "sweep_beta"]),
    RunCase("n-val-zero", ["benchmark.build.n_val=0"], ["benchmark.build.n_val=0", "integer >= 1"]),
    # 3. data lost
    RunCase("nan-parameters-keep-the-good-checkpoint", [poison_after_steps(1)],
            ["parameter model.", "is not finite", "losses were finite", "not saved",
             "last good checkpoint (after epoch 0) is kept"], check=checkpoint_unchanged),
    RunCase("forced-rerun-that-fails-keeps-the-finished-run", ["seed=1", "run.force=true",
            "benchmark.protocol.optimizer.lr=1e20"], ["non-finite loss", "run.force=true"]),
]
RUN_CASES += SAFETY_CASES


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A results root with a killed run (checkpoint, no summary), a finished run (seed 1) and a
    checkpoint of a model of another size."""
    root = tmp_path_factory.mktemp("catalogue")
    env = _env(WANDB_MODE="disabled")
    run = lambda *a: subprocess.run([sys.executable, "-m", "mtl.train", *RUN_BASE, f"run.root={root}", *a],  # noqa: E731
                                    cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run(kill_after_epoch(0)).returncode == -9
    assert run("seed=1").returncode == 0
    other = run("benchmark.build.hidden=16", "run.tag=_other", kill_after_epoch(0))
    assert other.returncode == -9, other.stderr[-1500:]
    (root / "other").mkdir()
    shutil.copy(root / "synthetic" / "db_mtl_other" / "seed0" / "checkpoint.pt", root / "other")
    return root


def finished_digest(root: Path) -> dict[str, str]:
    finished = root / "synthetic" / "db_mtl" / "seed1"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(finished.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_run_error_catalogue(case, campaign, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(campaign, root)
    if case.prepare is not None:
        case.prepare(root)
    before = finished_digest(root)
    args = [a.replace("{root}", str(root)) for a in case.args]
    if not any(a.startswith("run.root=") for a in args):
        args.append(f"run.root={root}")
    r = subprocess.run([sys.executable, "-m", "mtl.train", *case.base, *args], cwd=REPO,
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
    assert finished_digest(root) == before  # the finished run next to it is untouched
    if case.check is not None:
        case.check(root, campaign)


# Stops (issue #20 §4): a signal anywhere ends with one line and exit status 3 (EXIT_PREEMPTED: the
# docs' `[ $rc -eq 3 ] && requeue`), the finished run next to it untouched.
STOP_CASES = [
    RunCase("ctrl-c-mid-epoch", ["run.tag=_int", "trainer.epochs=3",
                                 callbacks("mtl.run.testing.SignalAfterSteps,steps:6,signal:SIGINT")],
            ["SIGINT: checkpoint saved at epoch"], code=3),
    RunCase("sigterm-during-setup", ["run.tag=_setup", callbacks("mtl.run.testing.SignalAt,hook:init,signal:SIGTERM")],
            ["SIGTERM during setup", "same command"], code=3),
    RunCase("sigusr1-after-last-epoch", ["run.tag=_end", "trainer.epochs=1",
                                         callbacks("mtl.run.testing.SignalAt,hook:on_fit_end,signal:SIGUSR1")],
            ["SIGUSR1 during the end of the run"], code=3),
]


@pytest.mark.parametrize("case", STOP_CASES, ids=[c.id for c in STOP_CASES])
def test_stop_catalogue(case, campaign, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(campaign, root)
    before = finished_digest(root)
    r = subprocess.run([sys.executable, "-m", "mtl.train", *case.base, *case.args, f"run.root={root}"], cwd=REPO,
                       env=_env(WANDB_MODE="disabled"), capture_output=True, text=True, timeout=300)
    assert r.returncode == case.code, r.stdout[-1500:] + r.stderr[-1500:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-1500:]
    for text in case.message:
        assert text in lines[0], (text, lines[0])
    assert finished_digest(root) == before


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """torch.save on a full disk raises a C++ 'enforce fail ... file write failed' RuntimeError; the run
    says the disk is full, and the previous checkpoint (renamed into place only after a complete
    write) stays intact."""
    import shutil as shutil_mod
    from collections import namedtuple

    from mtl.run import rundir as results
    from mtl.errors import StorageError
    from mtl.run.entry import run

    path = run([*RUN_BASE, f"run.root={tmp_path}", "trainer.epochs=1"])
    before = (path / "checkpoint.pt").read_bytes()

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0 "
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(results.torch, "save", full)
    monkeypatch.setattr(shutil_mod, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30, 3 * 2**20))
    with pytest.raises(StorageError, match=r"checkpoint.pt: the disk is full \(3 MiB left\).*run.root="):
        results.RunDir(path).save_checkpoint({"model": {}, "epoch": 0, "history": []})
    assert (path / "checkpoint.pt").read_bytes() == before
    assert not list(path.glob("*.tmp"))
