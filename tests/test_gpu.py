"""GPU smoke test (`make test-gpu`, marker `gpu`, deselected by default; ~5 min on one H100).

- every registered method, two training steps through the trainer on every benchmark's fixture;
- kill-and-resume through the trainer for every stateful method (state restored on the device);
- a full-size NYUv2 fixture (288x384, DeepLabV3+ HPS, dilated ResNet-50, batch 8): EW / DB-MTL /
  Nash-MTL step time against the bare loop, peak memory, fp32, bf16 and fp16, `grad_engine=auto` warmed
  up before timing, host syncs per step (EW <= 2, DB-MTL <= 3; fp16 one more each, DB-MTL two);
- loop vs batched gradient engine equality on the device.

Results go to results/bench/gpu_smoke_<device>.csv (long format: section, benchmark, method,
precision, metric, value) and are printed at the end.

Environment: MTL_SMOKE_DEVICE (default cuda; `cpu` for a dry run of every line on a machine
without a GPU), MTL_SMOKE_SIZE (full | tiny; default full on CUDA, tiny on CPU: the timing model
becomes a tiny ResNet at 32x64), MTL_SMOKE_METHODS (comma list to restrict the per-method tests),
MTL_SMOKE_OUT (output folder, default results/bench). Pretrained weights are never downloaded:
every model is randomly initialised (timings do not depend on the weights).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from mtl import methods
from mtl.run import testing
from mtl.run.testing import kill_after_epoch

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("MTL_SMOKE_DEVICE", "cuda")
FULL = os.environ.get("MTL_SMOKE_SIZE", "full" if DEVICE.startswith("cuda") else "tiny") == "full"
_only = os.environ.get("MTL_SMOKE_METHODS")
METHODS = [m for m in methods.available() if not _only or m in _only.split(",")]
BENCHMARKS = ["synthetic", "toy", "qm9", "nyuv2", "nyuv2_segnet", "cityscapes", "office31", "officehome"]
ROWS: list[dict] = []


def record(section, benchmark="", method="", precision="", metric="", value=""):
    ROWS.append({"section": section, "benchmark": benchmark, "method": method, "precision": precision,
                 "metric": metric, "value": value})


def device_slug() -> str:
    if torch.device(DEVICE).type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(torch.device(DEVICE)).lower()).strip("_")


@pytest.fixture(scope="module", autouse=True)
def report(pytestconfig):
    if torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"MTL_SMOKE_DEVICE={DEVICE} but CUDA is not available; run on a GPU machine or set "
                    f"MTL_SMOKE_DEVICE=cpu for a dry run")
    t0 = time.perf_counter()
    yield
    record("total", metric="wall_s", value=round(time.perf_counter() - t0, 1))
    out_dir = Path(os.environ.get("MTL_SMOKE_OUT", REPO / "results" / "bench"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu_smoke_{device_slug()}.csv"
    stamp = {"device": torch.cuda.get_device_name(torch.device(DEVICE)) if torch.device(DEVICE).type == "cuda"
             else "cpu", "torch": torch.__version__, "date": dt.datetime.now().isoformat(timespec="seconds")}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*ROWS[0], *stamp])
        writer.writeheader()
        for row in ROWS:
            writer.writerow({**row, **stamp})
    tr = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        tr.write_line(f"wrote {path}")
        for row in ROWS:
            if row["section"] != "two_steps":  # 280 one-line rows: in the file only
                tr.write_line(",".join(str(v) for v in row.values()))


# ---- fixtures ------------------------------------------------------------------------------------
def overrides(bench: str, tiny) -> list[str]:
    return [*tiny(bench), f"device={DEVICE}", "trainer.epochs=1", "trainer.max_steps_per_epoch=2"]


# ---- kill and resume on the device --------------------------------------------------------------
def _stateful(name: str) -> bool:
    m = methods.create(name, num_tasks=3, **_bench_step().method_config(name))
    return any(getattr(mod, "_state_attrs", ()) for mod in m.modules()) or any(True for _ in m.parameters()) \
        or any(True for _ in m.buffers())


class _Killed(Exception):
    pass


def _bench_step():
    """The step benchmark behind scripts/bench_step.py."""
    from mtl.perf import step

    return step


@pytest.mark.parametrize("method", [m for m in METHODS if _stateful(m)])
def test_kill_and_resume_on_device(method, tmp_path, monkeypatch):
    """Epoch 0, checkpoint, 'crash'; a fresh trainer restores everything onto the device and trains
    epoch 1 (a state tensor left on the host stops it with a device mismatch); the result equals an
    uninterrupted run's."""
    from mtl.run.entry import run

    common = ["benchmark=synthetic", "benchmark.build.n_train=128", "benchmark.build.n_val=64",
              "benchmark.build.n_test=64", "trainer.epochs=2", f"device={DEVICE}", f"method={method}",
              "seed=3", "logger=none", "trainer.progress=false"]
    full = run([*common, f"run.root={tmp_path / 'full'}"])

    def crash(pid, sig):  # what mtl.run.testing.KillAfterEpoch does, without killing pytest
        raise _Killed

    monkeypatch.setattr(testing.os, "kill", crash)
    with pytest.raises(_Killed):
        run([*common, f"run.root={tmp_path / 'resumed'}", kill_after_epoch(0)])
    monkeypatch.undo()
    resumed = run([*common, f"run.root={tmp_path / 'resumed'}"])  # a fresh trainer restores the checkpoint
    a, b = (json.loads((p / "summary.json").read_text()) for p in (full, resumed))
    assert a["steps"] == b["steps"]
    assert b["delta_p"] == pytest.approx(a["delta_p"], rel=1e-4, abs=1e-4)
    record("resume", "synthetic", method, metric="delta_p_full_vs_resumed", value=f"{a['delta_p']:.6g}/{b['delta_p']:.6g}")


def test_resumed_method_state_is_on_the_device(tmp_path, monkeypatch):
    """DB-MTL's EMA buffer (a [T, D] tensor of the step) must be on the model's device after a resume."""
    from mtl.run import trainer as trainer_mod
    from mtl.run.entry import run

    common = ["benchmark=synthetic", "benchmark.build.n_train=128", "trainer.epochs=2", f"device={DEVICE}",
              "method=db_mtl", "logger=none", "trainer.progress=false", f"run.root={tmp_path}"]
    monkeypatch.setattr(testing.os, "kill", lambda pid, sig: (_ for _ in ()).throw(_Killed()))
    with pytest.raises(_Killed):
        run([*common, kill_after_epoch(0)])
    monkeypatch.undo()
    seen = {}
    original = trainer_mod.Trainer._train_epoch

    def spy(self, epoch, global_step, *args, **kwargs):
        seen["buffer"] = self.method.grad_buffer.device.type if self.method.grad_buffer is not None else None
        return original(self, epoch, global_step, *args, **kwargs)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_epoch", spy)
    run(common)
    assert seen["buffer"] == torch.device(DEVICE).type


# ---- full-size NYUv2 timing ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def nyuv2_full(tmp_path_factory):
    from mtl.datasets import nyuv2
    from mtl.benchmarks.nyuv2 import build

    root = tmp_path_factory.mktemp("nyuv2_full")
    if FULL:  # the published set-up: 288x384, DeepLabV3+ HPS on a dilated ResNet-50, batch 8
        path = nyuv2.write_fixture(root, n_train=16, n_val=2, height=288, width=384)
        torch.manual_seed(0)
        bench = build(root=str(path), image_size=[288, 384], split_sizes=None, pretrained=False, num_workers=0,
                      train_batch_size=8, test_batch_size=8)
    else:
        path = nyuv2.write_fixture(root, n_train=4, n_val=2, height=32, width=64)
        torch.manual_seed(0)
        bench = build(root=str(path), image_size=None, split_sizes=None, pretrained=False, num_workers=0,
                      backbone="tiny", dilated=False, head_channels=8, train_batch_size=2, test_batch_size=2)
    return bench


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_nyuv2_full_size_step_time(precision, nyuv2_full):
    bs = _bench_step()
    workload = bs.benchmark_workload(nyuv2_full, "nyuv2_hps" + ("" if FULL else "_tiny"))
    reps = 10 if FULL else 2
    df, skipped = bs.run(workload, ["db_mtl", "nash_mtl"], reps=reps, warmup=3, engine="auto",
                         device=DEVICE, precision=precision, log=lambda s: None)
    assert not skipped, skipped
    for row in df.to_dict("records"):
        for metric in ("median_ms", "ratio_to_bare_loop", "ratio_to_ew", "backward_passes_per_step",
                       "host_syncs_per_step", "peak_mib", "engine"):
            record("nyuv2_step", workload.name, row["method"], precision, metric, row[metric])
    syncs = dict(zip(df["method"], df["host_syncs_per_step"]))
    # fp16: GradScaler's inf check (+1 for every method) and the Jacobian's isfinite (+1, gradient methods)
    extra = 1 if precision == "fp16" else 0
    assert syncs["ew"] <= 2 + extra and syncs["db_mtl"] <= 3 + 2 * extra, syncs


# ---- loop vs batched engine ---------------------------------------------------------------------
@pytest.mark.parametrize("bench", ["synthetic", "qm9", "nyuv2"])
def test_loop_and_batched_engines_agree_on_device(bench, tiny):
    from mtl.engine import GradientEngine
    from mtl.config.compose import compose
    from mtl.run.trainer import build_benchmark
    from mtl.benchmarks.base import to_device

    cfg = compose([*overrides(bench, tiny), "logger=none"])
    torch.manual_seed(0)
    b = build_benchmark(cfg)
    model = b.model.to(DEVICE).train()
    batch = to_device(next(iter(b.loaders["train"])), torch.device(DEVICE))
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # compare fp32 to fp32
    from mtl.errors import InvalidCombination

    try:
        losses, _ = b.compute_losses(model, batch)  # one forward: dropout draws are shared by both modes
        jac = lambda engine: engine.jacobian(losses, model.shared_parameters(), model.task_parameters(),  # noqa: E731
                                             retain_graph=True)
        grads = {"loop": jac(GradientEngine("loop"))}
        try:
            grads["batched"] = jac(GradientEngine("batched"))
        except InvalidCombination as err:
            # some backward ops have no vmap rule on this device (cuDNN's LSTM in QM9's Set2Set on CUDA):
            # batched says so in one line, auto falls back to the loop
            assert "grad_engine=loop" in str(err), err
            with pytest.warns(UserWarning, match="using the loop"):
                auto = GradientEngine("auto")
                jac(auto)
            assert auto.chosen == "loop"
            record("engine_equality", bench, metric="batched_unsupported", value=str(err).split(",")[0][:80])
            return
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    G, H = grads["loop"].shared, grads["batched"].shared
    rel = ((G - H).norm(dim=1) / G.norm(dim=1).clamp_min(1e-30)).max().item()
    record("engine_equality", bench, metric="max_relative_row_difference", value=f"{rel:.3g}")
    assert rel < 1e-4
    for row_l, row_b in zip(grads["loop"].task, grads["batched"].task):
        for gl, gb in zip(row_l, row_b):
            assert (gl is None) == (gb is None) or (gl is None and not gb.any()) or (gb is None and not gl.any())
            if gl is not None and gb is not None:
                torch.testing.assert_close(gl, gb, rtol=1e-4, atol=1e-6)


# ---- every method, two steps, every benchmark ---------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bench", BENCHMARKS)
def test_two_steps_on_device(bench, method, tiny, train):
    from mtl.errors import InvalidCombination

    t0 = time.perf_counter()
    try:
        run_dir = train([*overrides(bench, tiny), f"method={method}", "run.checkpoint=false"])
    except InvalidCombination as err:  # e.g. rep-grad methods on models without one representation
        record("two_steps", bench, method, metric="refused", value=str(err).split(";")[0][:80])
        return
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["steps"] == 2 and s["device"].startswith(torch.device(DEVICE).type)
    values = [v for m in s["metrics"].values() for v in m.values()]
    assert all(v == v for v in values), f"{bench}/{method}: NaN metric {s['metrics']}"
    record("two_steps", bench, method, metric="seconds", value=round(time.perf_counter() - t0, 2))


def test_sync_counter_sees_blocking_copies_on_device():
    """Both counters on the device: a blocking copy and an .item() count 2, a step-free block 0."""
    from mtl.perf.syncs import SyncCounter

    x = torch.ones(1000, device=DEVICE)
    torch.cuda.synchronize() if torch.device(DEVICE).type == "cuda" else None
    with SyncCounter(DEVICE) as idle:
        (x * 2).sum()
    with SyncCounter(DEVICE) as c:
        x.cpu(), x.sum().item()
    print(f"sync counter on {DEVICE}: python {c.python_count}, driver {c.driver_count}, sites {dict(c.sites)}")
    assert idle.count == 0 and c.count == 2
