"""fp16 loss scaling (`trainer.precision=fp16`, `mtl.run.precision.LossScaling` around torch's GradScaler):
every method sees and writes unscaled gradients, a step with inf/NaN per-task gradients is skipped
before any method state changes, and the scaler's state survives a resume. CPU autocast supports
float16, so these run the real fp16 forward pass."""
import copy
import json

import numpy as np
import pytest
import torch

from mtl import methods
from mtl.run import precision
from mtl.errors import Preempted
from mtl.methods.base import LossWeighting
from mtl.methods.combo import Combined
from mtl.run.rundir import RunDir
from mtl.run.testing import signal_after_steps
from tests.test_method_properties import ALL, Tiny, batches

STATE_FREE_ON_SKIP = [n for n in ALL if not issubclass(methods.get_class(n), (LossWeighting, Combined))]


class InfGrad(torch.autograd.Function):
    """Identity whose backward is inf: an overflow in one task's backward pass (the loss stays finite)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


def setup(name, scaling=None, engine="loop", **kw):
    torch.manual_seed(0)
    model = Tiny()
    method = methods.create(name, num_tasks=3, engine=engine, **kw)
    groups = [{"params": list(model.parameters())}]
    if method.trainable_parameters():
        groups.append({"params": method.trainable_parameters()})
    opt = torch.optim.Adam(groups, lr=1e-2)
    steps = precision.Unscaled() if scaling is None else precision.LossScaling(model.parameters(), "cpu", **scaling)
    method.on_epoch_start(0)
    return model, method, opt, steps


def train_step(model, method, opt, steps, seed, prec="fp32", inject=False):
    """One trainer step (trainer._train_epoch's order). Returns (info, .grad after the method, stepped)."""
    opt.zero_grad(set_to_none=False)
    k = method.batches_per_step
    with precision.autocast(prec, "cpu"):
        per = [model.losses(x, y, method.rep_grad) for x, y in batches(k, seed=seed)]
    rows = [l.float() for l, _ in per]
    if inject:
        rows = [torch.stack([r[0], InfGrad.apply(r[1]), r[2]]) for r in rows]
    losses, rep = (rows[0], per[0][1]) if k == 1 else (torch.stack(rows), None)
    info = steps.backward(method, losses, list(model.enc.parameters()), list(model.heads.parameters()), rep=rep)
    grads = [None if p.grad is None else p.grad.clone() for p in list(model.parameters())]
    stepped = bool(steps.step(opt))
    if method.wants_post_step_losses and stepped:
        with torch.no_grad():
            method.after_step(model.losses(*batches(1, seed=seed)[0])[0])
    return info, grads, stepped


def assert_same(a, b, where="state"):
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=f"{where} changed")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=f"{where} changed")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("name", ALL)
def test_loss_scaling_is_invisible_to_every_method(name):
    """In fp32 arithmetic a power-of-two scale changes no rounding: with the scale on, every method
    must produce bit-identical gradients and parameters. A method that saw scaled gradients (MGDA's
    Gram matrix, DB-MTL's EMA, UW's log-variances) would differ by the factor 2^16."""
    runs = []
    for scaling in (None, {"init_scale": 2.0 ** 16}):
        model, method, opt, steps = setup(name, scaling)
        out = []
        for seed in range(3):
            torch.manual_seed(10 + seed)
            out.append(train_step(model, method, opt, steps, seed)[1])
        runs.append((out, [p.detach().clone() for p in model.parameters()]))
    for g_plain, g_scaled in zip(runs[0][0], runs[1][0]):
        assert_same(g_plain, g_scaled, f"{name}: .grad")
    assert_same(runs[0][1], runs[1][1], f"{name}: parameters")


@pytest.mark.parametrize("name,engine,kw", [("db_mtl", "loop", {}), ("db_mtl", "batched", {}),
                                            ("db_mtl_rep", "loop", {}), ("mgda", "loop", {}),
                                            ("cagrad", "batched", {}), ("modo", "loop", {}), ("uw", "loop", {})])
def test_fp16_gradients_equal_fp32_ones_to_fp16_tolerance(name, engine, kw):
    """The per-task gradients handed to the method (G) and the combined direction in .grad, under fp16
    autocast with a scale of 2^8, equal the fp32 ones within fp16 rounding (not 2^8 times them)."""
    results = []
    for prec, scaling in (("fp32", None), ("fp16", {"init_scale": 2.0 ** 8})):
        model, method, opt, steps = setup(name, scaling, engine, **kw)
        seen = []
        if hasattr(method, "aggregate"):
            original = method.aggregate
            method.aggregate = lambda G, losses: (seen.append(G.clone()), original(G, losses))[1]
        _, grads, stepped = train_step(model, method, opt, steps, seed=1, prec=prec)
        assert stepped
        results.append((seen, grads))
    (G32, g32), (G16, g16) = results
    assert len(G16) >= len(G32)  # fp32 DB-MTL on the loop engine streams G: no aggregate call
    for a, b in zip(G32, G16):
        assert (b - a).norm() <= 2e-2 * a.norm(), f"{name}: per-task gradients differ beyond fp16 rounding"
    a, b = torch.cat([g.reshape(-1) for g in g32]), torch.cat([g.reshape(-1) for g in g16])
    assert (b - a).norm() <= 2e-2 * a.norm(), f"{name}: combined gradient differs beyond fp16 rounding"


@pytest.mark.parametrize("name", ALL)
def test_inf_gradient_skips_the_step_and_backs_off_the_scale(name):
    """Step 2 overflows in one task's backward: no optimizer step, optimizer state as it was, the
    scale halved; a method that combines per-task gradients keeps its state exactly (EMA buffers,
    warm starts, step and loss counters). Step 3 trains again at the halved scale."""
    model, method, opt, steps = setup(name, {"init_scale": 2.0 ** 10})
    train_step(model, method, opt, steps, seed=0)  # epoch 0: warm-up steps (GradNorm) take one step
    method.on_epoch_end(0)
    method.on_epoch_start(1)
    assert train_step(model, method, opt, steps, seed=1)[2]
    params = [p.detach().clone() for p in model.parameters()]
    opt_state = copy.deepcopy(opt.state_dict())
    method_state = copy.deepcopy(method.state_dict())
    scale = steps.scaler.get_scale()

    info, _, stepped = train_step(model, method, opt, steps, seed=2, inject=True)
    assert not stepped
    assert steps.scaler.get_scale() == scale / 2
    assert_same(params, [p.detach() for p in model.parameters()], f"{name}: parameters")
    assert_same(opt_state, opt.state_dict(), f"{name}: optimizer state")
    if name in STATE_FREE_ON_SKIP:
        assert info == {}
        after = method.state_dict()
        for state in (method_state, after):  # the backward passes made are counted all the same
            state["_extra_state"].pop("engine_backward_passes")
        assert_same(method_state, after, f"{name}: method state")

    assert train_step(model, method, opt, steps, seed=3)[2]
    assert steps.scaler.get_scale() == scale / 2
    assert any(not torch.equal(a, b) for a, b in zip(params, model.parameters())), f"{name}: did not train"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_overflowing_scale_is_backed_off_until_steps_succeed():
    """A scale of 2^40 overflows fp16 in the backward pass: GradScaler halves it step by step (the
    parameters and DB-MTL's EMA untouched meanwhile) until the gradients fit, then training runs;
    every skip halves the scale, and only the steps taken advance DB-MTL's EMA."""
    model, method, opt, steps = setup("db_mtl", {"init_scale": 2.0 ** 40})
    params = [p.detach().clone() for p in model.parameters()]
    taken = []
    for s in range(40):
        before = [p.detach().clone() for p in model.parameters()]
        taken.append(train_step(model, method, opt, steps, seed=s, prec="fp16")[2])
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert moved == taken[-1]
    first = taken.index(True)
    assert first > 5 and sum(taken[first:]) >= 0.8 * (40 - first), taken
    assert method.db_step == sum(taken) and method.step_count == sum(taken)
    assert steps.scaler.get_scale() == 2.0 ** (40 - taken.count(False))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(params, model.parameters()))


@pytest.mark.parametrize("name", ALL)
def test_every_method_trains_in_fp16_through_the_trainer(name, train, monkeypatch):
    from mtl.run import trainer as trainer_mod

    taken, finite = [], []
    original_step, original_finish = precision.LossScaling.step, trainer_mod.Trainer.finish

    def step(self, opt):
        out = original_step(self, opt)
        taken.append(bool(out))
        return out

    def finish(self):
        finite.append(all(bool(torch.isfinite(p).all()) for p in self.model.parameters()))
        return original_finish(self)

    monkeypatch.setattr(precision.LossScaling, "step", step)
    monkeypatch.setattr(trainer_mod.Trainer, "finish", finish)
    path = train(["benchmark=synthetic", f"method={name}", "trainer.precision=fp16", "trainer.epochs=1",
                  "trainer.max_steps_per_epoch=4", "run.checkpoint=false"])
    assert len(taken) == 4 and any(taken), taken  # the first steps may back the initial 2^16 scale off
    assert finite == [True]
    summary = json.loads((path / "summary.json").read_text())
    assert all(v == v for m in summary["metrics"].values() for v in m.values())


def test_fp16_resume_restores_the_scaler_and_continues_identically(tmp_path, monkeypatch):
    """A small growth interval and a scale that first overflows make the scaler's state matter: a
    resume that restarted it would skip other steps. Preempted mid-epoch, resumed, the run equals the
    uninterrupted one."""
    from mtl.run.entry import run

    monkeypatch.setattr(precision, "steps", lambda prec, params, device: precision.LossScaling(
        params, device, init_scale=2.0 ** 20, growth_interval=2))
    common = ["benchmark=synthetic", "benchmark.build.n_train=256", "trainer.epochs=3", "method=db_mtl",
              "trainer.precision=fp16", "logger=none", "trainer.progress=false", "device=cpu"]
    full = run([*common, f"run.root={tmp_path / 'full'}"])
    with pytest.raises(Preempted):
        run([*common, f"run.root={tmp_path / 'cut'}", signal_after_steps(6)])
    cut = tmp_path / "cut" / "synthetic" / "db_mtl" / "seed0"
    saved = torch.load(cut / "checkpoint.pt", weights_only=False)["grad_scaler"]
    assert saved["scale"] < 2.0 ** 20 and saved["_growth_tracker"] in (0, 1)
    resumed = run([*common, f"run.root={tmp_path / 'cut'}"])

    def rows(path):
        return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in RunDir(path).read_metrics()]

    assert rows(resumed) == rows(full)
    a, b = RunDir(full).read_summary(), RunDir(resumed).read_summary()
    assert (a["metrics"], a["steps"]) == (b["metrics"], b["steps"])

