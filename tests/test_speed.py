"""Speed tooling: host-sync counting, the step benchmark's reference rows, the QM9 fixture file."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl.engine import GradientEngine
from mtl.perf.syncs import SyncCounter

REPO = Path(__file__).resolve().parents[1]


def bench_step():
    """The step benchmark behind scripts/bench_step.py."""
    from mtl.perf import step

    return step


def test_sync_counter_counts_host_reads_but_not_torch_internals():
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters())
    with SyncCounter("cpu") as c:
        loss = model(torch.randn(3, 4)).pow(2).mean()
        loss.backward()
        opt.step()  # Adam reads its host-side step counters with .item(): not a device sync
        opt.step()
        assert c.count == 0
        value = loss.detach()
        value.item(), value.tolist(), bool(value > 0), float(value), value.cpu()
        if value > 0:
            pass
    assert c.count == 6
    assert sum(n for site, n in c.sites.items() if site.endswith("__bool__")) == 2


def test_cuda_counter_takes_the_larger_of_python_and_driver_counts(monkeypatch):
    """The CUDA path without a GPU: the driver's sync debug mode is faked by warnings. A blocking
    copy the driver does not report (seen on an H100 for Nash-MTL's Gram) still counts, and syncs
    only the driver sees (inside torch ops) count too."""
    import warnings

    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    x = torch.ones(3)
    with SyncCounter("cuda") as c:
        x.cpu(), x.sum().item()  # no driver warning: the Python-level counter sees both
    assert (c.python_count, c.driver_count, c.count) == (2, 0, 2)
    with SyncCounter("cuda") as c:
        for _ in range(3):  # e.g. torch.nonzero inside an op: only the driver sees them
            warnings.warn("called a synchronizing CUDA operation", UserWarning)
        x.cpu()
    assert (c.python_count, c.driver_count, c.count) == (1, 3, 3)
    assert sum(n for site, n in c.sites.items() if site.startswith("driver:")) == 3


def test_batched_engine_reads_head_flags_with_one_sync():
    torch.manual_seed(0)
    enc = torch.nn.Linear(5, 8)
    heads = torch.nn.ModuleList(torch.nn.Linear(8, 1) for _ in range(3))
    x = torch.randn(4, 5)
    h = enc(x)
    losses = torch.stack([heads[t](h).pow(2).mean() for t in range(3)])
    task_params = list(heads.parameters())
    with SyncCounter("cpu") as c:
        batched = GradientEngine("batched").jacobian(losses, list(enc.parameters()), task_params, retain_graph=True)
    assert c.count == 1  # was one per (task, head parameter): 18 here
    loop = GradientEngine("loop").jacobian(losses, list(enc.parameters()), task_params)
    for t, (row_b, row_l) in enumerate(zip(batched.task, loop.task)):
        # the batched rows leave out the heads a task's loss does not reach (None), the loop gets zeros
        assert [g is None for g in row_b] == [k // 2 != t for k in range(6)]
        for gb, gl in zip(row_b, row_l):
            torch.testing.assert_close(torch.zeros_like(gl) if gb is None else gb, gl)


def test_bench_step_reports_bare_loop_ew_and_host_syncs():
    bs = bench_step()
    df, skipped = bs.run(bs.build_workload("mlp"), ["db_mtl"], reps=1, warmup=1, log=lambda s: None)
    assert not skipped
    rows = df.set_index("method")
    assert list(rows.index) == ["bare_loop", "ew", "db_mtl"]
    assert rows.loc["bare_loop", "ratio_to_bare_loop"] == 1.0 and rows.loc["ew", "ratio_to_ew"] == 1.0
    assert rows.loc["bare_loop", "backward_passes_per_step"] == 3 and rows.loc["ew", "backward_passes_per_step"] == 1
    assert rows.loc["db_mtl", "backward_passes_per_step"] == 3
    # per training step (forward, method.backward, optimizer step): EW <= 2, DB-MTL <= 3 host syncs
    assert rows.loc["ew", "host_syncs_per_step"] <= 2 and rows.loc["db_mtl", "host_syncs_per_step"] <= 3


def test_bare_loop_gradient_equals_ew():
    """The reference row computes the same gradient as EW, only with T backward passes."""
    bs = bench_step()
    w = bs.build_workload("mlp")
    bare, ew = bs.Runner("bare_loop", w), bs.Runner("ew", w)
    for r in (bare, ew):
        r.opt.param_groups[0]["lr"] = 0.0  # gradients only
        r._step()
    for p, q in zip(bare.model.parameters(), ew.model.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_qm9_fixture_file_runs_without_qm9pack(tmp_path, train, monkeypatch):
    from mtl.datasets import qm9
    from mtl.datasets.fixtures import write_fixture

    path = write_fixture("qm9", tmp_path / "qm9", n=120)

    def no_qm9pack():
        raise AssertionError("the fixture path must not look for qm9pack")

    monkeypatch.setattr(qm9.sources, "qm9pack_data_dir", no_qm9pack)  # where QM9 looks it up
    ds = qm9.QM9File(path)
    assert len(ds) == ds.limit == 120 and ds[0].x.shape[1] == 11 and ds[0].edge_attr.shape[1] == 4
    b = "benchmark.build"
    run_dir = train(["benchmark=qm9", f"{b}.data_file={path}", f"{b}.subset={{train:16,val:8,test:8}}",
                     f"{b}.batch_size=8", f"{b}.eval_batch_size=8", f"{b}.progress=false", "method=db_mtl",
                     "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "run.checkpoint=false"])
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["steps"] == 2 and set(s["metrics"]) == {"mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U",
                                                       "H", "G", "cv"}
    with pytest.raises(Exception, match="write_fixture"):
        qm9.QM9File(tmp_path / "missing.pt")


def test_db_mtl_streamed_loop_equals_the_jacobian_path():
    """DB-MTL's loop path (each gradient folded into the EMA by a post-accumulate hook, no [T, D]
    copy) gives the same buffer, update, head gradients and diagnostics as the generic [T, D] path
    (batched engine): with .grad None, zero or holding a gradient to accumulate onto, and with a
    shared parameter that only one task's loss reaches."""
    from mtl import methods

    def make():
        torch.manual_seed(0)
        enc = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))
        heads = torch.nn.ModuleList(torch.nn.Linear(8, 1) for _ in range(3))
        gate = torch.nn.Parameter(torch.tensor([1.5]))  # shared, reached by task 0 only
        return enc, heads, gate

    runs = {}
    for engine in ("loop", "batched"):
        enc, heads, gate = make()
        shared = [*enc.parameters(), gate]
        m = methods.create("db_mtl", num_tasks=3, engine=engine, beta_sigma=0.5)
        gen = torch.Generator().manual_seed(1)
        for step in range(4):
            x, y = torch.randn(6, 5, generator=gen), torch.randn(6, 3, generator=gen)
            for p in [*shared, *heads.parameters()]:  # the .grad conventions: None, zeros, a gradient
                p.grad = (None, torch.zeros_like(p), torch.ones_like(p), torch.zeros_like(p))[step]
            h = enc(x)
            preds = [heads[t](h).squeeze(-1) * (gate if t == 0 else 1.0) for t in range(3)]
            losses = torch.stack([((preds[t] - y[:, t]) ** 2).mean() * 10.0 ** t for t in range(3)])
            info = m.backward(losses, shared, list(heads.parameters()))
        runs[engine] = (m, [p.grad.clone() for p in [*shared, *heads.parameters()]], info)
        if engine == "loop":  # no hook is left behind on the parameters
            assert not any(getattr(p, "_post_accumulate_grad_hooks", None) for p in shared)
    (a, ga, ia), (b, gb, ib) = runs["loop"], runs["batched"]
    assert a.engine.backward_passes == 12 and a.db_step == b.db_step == 4
    torch.testing.assert_close(a.grad_buffer, b.grad_buffer)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)
    assert set(ia) == set(ib)
    for k in ia:
        torch.testing.assert_close(ia[k], ib[k])


@pytest.mark.parametrize("T", [3, 6])
def test_nash_mtl_dpp_solver_reproduces_recorded_weights(T):
    """Solver inputs and outputs recorded from training steps with the previous (non-DPP,
    recompiled every solve) formulation by scripts/record_nash_grams.py: the DPP problem built once
    returns the same alpha to solver tolerance."""
    from mtl import methods

    rec = np.load(REPO / "tests" / "data" / "nash_mtl_grams.npz")
    m = methods.create("nash_mtl", num_tasks=T)
    assert m._prob.is_dcp(dpp=True)
    for gram, start, alpha, failures in zip(rec[f"gram{T}"], rec[f"start{T}"], rec[f"alpha{T}"], rec[f"failures{T}"]):
        m.prvs_alpha = start.copy()
        L = torch.from_numpy(np.linalg.cholesky(gram))  # any G with G G^T = gram gives the same problem
        got, info = m.solve_weights(L)
        assert info["solver_failures"] == failures
        # the recorded alpha is itself only as exact as its Nash residual max_i |a_i (G G^T a)_i - 1|
        # (ECOS tolerance + the outer loop's stopping rule); agreement is judged against that, capped
        # for the steps where the linearisation stalls short of the solution in both formulations
        old_residual = np.abs(alpha * (gram @ alpha) - 1).max()
        assert np.abs(got / alpha - 1).max() <= max(2 * min(old_residual, 5e-4), 2e-5)
        assert info["nash_residual"] <= 1.5 * old_residual + 1e-4


def test_gram64_matches_float64_product_without_full_copy():
    from mtl.engine import gram64

    G = torch.randn(4, 1000)
    ref = G.double() @ G.double().T
    torch.testing.assert_close(gram64(G, chunk=64), ref, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(gram64(G), ref)


def test_cagrad_huge_gradients_solved_on_the_normalised_gram():
    """Gram diagonal ~1e12 (seen on a random-init ResNet-18 fixture): SLSQP fails on the raw scale;
    the retry on the normalised Gram returns the raw problem's minimiser (the objective is
    homogeneous in A), which equals the weights of the same gradients at unit scale."""
    from mtl.methods.cagrad import _slsqp, cagrad_solve

    rng = np.random.default_rng(0)
    G = rng.normal(size=(3, 50)) * np.array([[1.0], [0.03], [0.3]])
    unit = G @ G.T
    huge = unit * 1e12
    assert not _slsqp(huge, 0.5)[0].success  # the reference's solve fails here
    w_huge, c_huge = cagrad_solve(huge, 0.5)
    w_unit, c_unit = cagrad_solve(unit, 0.5)
    np.testing.assert_allclose(w_huge, w_unit, atol=1e-4)
    assert c_huge == pytest.approx(c_unit * 1e6, rel=1e-6)


@pytest.mark.parametrize("bench_name", ["synthetic", "nyuv2"])
def test_stl_step_runs_only_its_own_head(bench_name, tmp_path):
    """STL (active_tasks = [i]) computes only head i; its loss and gradients equal those of the
    full forward pass, the other tasks' losses are constant zeros."""
    from mtl.datasets import nyuv2
    from mtl.benchmarks import nyuv2 as nyu_bench, synthetic

    torch.manual_seed(0)
    if bench_name == "synthetic":
        b = synthetic.build(n_train=32, n_val=8, n_test=8, batch_size=8)
    else:
        root = nyuv2.write_fixture(tmp_path / "nyu", n_train=2, n_val=1, height=32, width=64)
        b = nyu_bench.build(root=str(root), image_size=None, split_sizes=None, pretrained=False, num_workers=0,
                            backbone="tiny", dilated=False, head_channels=8, train_batch_size=2)
    model = b.model.eval()  # no dropout: both passes see the same function
    batch = next(iter(b.loaders["train"]))
    calls = {name: 0 for name in model.heads}
    for name, head in model.heads.items():
        head.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls[name] + 1))
    full, _ = b.compute_losses(model, batch)
    ref = torch.autograd.grad(full[1], list(model.parameters()), allow_unused=True)
    assert all(v == 1 for v in calls.values())
    one, _ = b.compute_losses(model, batch, tasks=[1])
    assert calls == {name: 1 + (k == 1) for k, name in enumerate(model.heads)}
    torch.testing.assert_close(one[1], full[1])
    assert one[0] == 0 and one[2] == 0
    no_grad = torch.autograd.grad(one[0] + one[2], list(model.parameters()), allow_unused=True, retain_graph=True)
    assert all(g is None or not g.any() for g in no_grad)  # constants: nothing flows to any parameter
    got = torch.autograd.grad(one.sum(), list(model.parameters()), allow_unused=True)
    for g, r in zip(got, ref):
        assert (g is None) == (r is None or not r.any())
        if g is not None:
            torch.testing.assert_close(g, r)


def test_dense_meters_update_without_host_syncs():
    """Per-batch metric updates stay on the device; only compute() reads values back."""
    from mtl.benchmarks import dense_metrics as dm

    torch.manual_seed(0)
    logits, label = torch.randn(2, 5, 8, 8), torch.randint(-1, 5, (2, 8, 8))
    depth_p, depth_g = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8) * (torch.rand(2, 1, 8, 8) > 0.3)
    normal_p, normal_g = torch.randn(2, 3, 8, 8), dm.normalize(torch.randn(2, 3, 8, 8))
    normal_g[:, :, :2] = 0  # invalid pixels
    meters = [(dm.SegmentationMeter(5), logits, label)] + [
        (cls(pooling), p, g) for pooling in dm.POOLINGS
        for cls, p, g in ((dm.DepthMeter, depth_p, depth_g), (dm.NormalMeter, normal_p, normal_g))]
    with SyncCounter("cpu") as c:
        for meter, p, g in meters:
            meter.update(p, g)
            meter.update(p, g)
    assert c.count == 0, c.sites
    for meter, _, _ in meters:
        assert all(v == v for v in meter.compute().values())


def test_normal_median_is_numpy_median_of_valid_pixels():
    from mtl.benchmarks import dense_metrics as dm

    torch.manual_seed(1)
    p, g = torch.randn(3, 3, 5, 7), dm.normalize(torch.randn(3, 3, 5, 7))
    g[0, :, 0, :3] = 0
    m = dm.NormalMeter("pixel")
    m.update(p[:2], g[:2])
    m.update(p[2:], g[2:])
    mask = dm.valid_normals(g)
    cos = (dm.normalize(p) * g).sum(1)[mask].clamp(-1, 1)
    err = np.degrees(torch.acos(cos).numpy().astype(np.float64))
    assert err.size % 2 == 0  # an even count: numpy averages the two middle values
    out = m.compute()
    assert out["MED"] == pytest.approx(np.median(err), rel=1e-5)
    assert out["Mean"] == pytest.approx(err.mean(), rel=1e-5)
    assert out["Within22.5"] == pytest.approx(100 * (err < 22.5).mean())


@pytest.mark.parametrize("method,limit", [("ew", 1), ("db_mtl", 1), ("igbv1", 1)])
def test_trainer_host_syncs_per_step(method, limit, train, monkeypatch):
    """Host reads per training step through the trainer, counted as the difference between an
    8-step and a 4-step epoch (per-epoch reads cancel): one, the loss flags (non-finite; negative
    under a log for DB-MTL and IGBv1), read together."""
    from mtl.run import trainer as trainer_mod

    counts = {}
    original = trainer_mod.Trainer._train_epoch

    def counted(self, epoch, global_step, *args, **kwargs):
        with SyncCounter("cpu") as c:
            out = original(self, epoch, global_step, *args, **kwargs)
        counts[out[1]] = c.count
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "_train_epoch", counted)
    for steps in (4, 8):
        train(["benchmark=synthetic", "benchmark.build.n_train=512", "trainer.epochs=1", f"method={method}",
               f"trainer.max_steps_per_epoch={steps}", "run.checkpoint=false", f"run.tag=_{steps}"])
    assert set(counts) == {4, 8}
    assert (counts[8] - counts[4]) / 4 <= limit, counts


def test_bf16_autocast_and_channels_last_through_the_trainer(tmp_path, train, monkeypatch):
    """trainer.precision=bf16 runs forward + losses under autocast (a Linear's output is bf16), the
    method receives fp32 losses, parameters stay fp32; channels_last converts the conv weights."""
    from mtl.datasets import nyuv2
    from mtl.run import trainer as trainer_mod
    from mtl.methods.base import Method

    seen = {}
    original_backward = Method.backward

    def spy(self, losses, *a, **k):
        seen.setdefault("loss_dtypes", set()).add(losses.dtype)
        return original_backward(self, losses, *a, **k)

    monkeypatch.setattr(Method, "backward", spy)
    original_epoch = trainer_mod.Trainer._train_epoch

    def hooked(self, epoch, global_step, *args, **kwargs):
        conv = next(m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d))
        seen["channels_last"] = conv.weight.is_contiguous(memory_format=torch.channels_last)
        seen["param_dtypes"] = {p.dtype for p in self.model.parameters()}
        conv.register_forward_hook(lambda m, i, o: seen.setdefault("out_dtypes", set()).add(o.dtype))
        return original_epoch(self, epoch, global_step, *args, **kwargs)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_epoch", hooked)
    root = nyuv2.write_fixture(tmp_path / "nyu", n_train=2, n_val=1, height=32, width=64)
    b = "benchmark.build"
    run_dir = train(["benchmark=nyuv2", f"{b}.root={root}", f"{b}.image_size=null", f"{b}.split_sizes=null",
                     f"{b}.num_workers=0", f"{b}.train_batch_size=2", f"{b}.test_batch_size=1",
                     f"{b}.pretrained=false", f"{b}.backbone=tiny", f"{b}.dilated=false", f"{b}.head_channels=8",
                     "trainer.epochs=1", "run.checkpoint=false", "method=db_mtl",
                     "trainer.precision=bf16", "trainer.channels_last=true"])
    assert seen["channels_last"] and seen["param_dtypes"] == {torch.float32}
    assert torch.bfloat16 in seen["out_dtypes"] and seen["loss_dtypes"] == {torch.float32}
    s = json.loads((run_dir / "summary.json").read_text())
    assert all(v == v for m in s["metrics"].values() for v in m.values())


def test_unknown_precision_is_refused_with_the_choices(train):
    from mtl.errors import InvalidValue

    with pytest.raises(InvalidValue, match=r"trainer.precision='fp8': unknown; choose one of fp32, bf16, fp16"):
        train(["benchmark=synthetic", "trainer.precision=fp8", "trainer.epochs=1"])


def test_to_device_copies_are_non_blocking_and_qm9_worker_order_is_reproducible(tmp_path):
    from mtl.datasets.fixtures import write_fixture
    from mtl.benchmarks.base import to_device
    from mtl.benchmarks.qm9 import build

    calls = []

    class Fake:
        def to(self, device, **kw):
            calls.append(kw)
            return self

    to_device({"a": [Fake(), (Fake(),)]}, torch.device("cpu"))
    assert calls == [{"non_blocking": True}] * 2
    path = write_fixture("qm9", tmp_path, n=120)
    b = build(data_file=str(path), subset={"train": 8, "val": 4, "test": 4}, batch_size=4, num_workers=1,
              progress=False)
    assert all(l.pin_memory == torch.cuda.is_available() for l in b.loaders.values())
    first = [batch.idx.tolist() for batch in b.train_batches(0, 3)]
    again = [batch.idx.tolist() for batch in b.train_batches(0, 3)]  # same (seed, epoch): same order
    assert first == again and sorted(sum(first, [])) == sorted(b.split_positions["train"].tolist())
