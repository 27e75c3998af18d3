"""Hand-computed values for the loss-weighting methods.

Set-up: one shared parameter per task, p (3,), and L_t = a_t * p_t with a = (1, 2, 4), so the
gradient on p_t is exactly the weight the method puts on dL_t (times a_t)."""
import math

import pytest
import torch

from mtl import methods

A = torch.tensor([1.0, 2.0, 4.0])


def step(method, p_value, a=A):
    p = torch.nn.Parameter(torch.tensor(p_value, dtype=torch.float32))
    info = method.backward(a * p, [p], [])
    return p.grad, info


def test_gls_weights_and_gradient():
    m = methods.create("gls", num_tasks=3)
    g, info = step(m, [1.0, 1.0, 1.0])
    # G = (1*2*4)^(1/3) = 2; w_t = G / (3 L_t) = (2/3, 1/3, 1/6); grad p_t = w_t a_t = 2/3 each
    torch.testing.assert_close(info["weights"], torch.tensor([2 / 3, 1 / 3, 1 / 6]))
    torch.testing.assert_close(g, torch.full((3,), 2 / 3))


def test_rlw_fixed_seed_libmtl_and_k_scaled():
    torch.manual_seed(0)  # torch.randn(3) under seed 0 = (1.5410, -0.2934, -2.1788)
    _, info = step(methods.create("rlw", num_tasks=3), [1.0, 1.0, 1.0])
    e = [math.exp(1.5410), math.exp(-0.2934), math.exp(-2.1788)]
    expected = torch.tensor([v / sum(e) for v in e])
    torch.testing.assert_close(info["weights"], expected, rtol=0, atol=2e-4)
    torch.manual_seed(0)
    g, info = step(methods.create("rlw", num_tasks=3, scale_by_num_tasks=True), [1.0, 1.0, 1.0])
    torch.testing.assert_close(info["weights"], 3 * expected, rtol=0, atol=6e-4)
    torch.testing.assert_close(g, 3 * expected * A, rtol=0, atol=3e-3)
    # fresh draw each step
    _, info2 = step(methods.create("rlw", num_tasks=3), [1.0, 1.0, 1.0])
    assert not torch.allclose(info2["weights"], expected, atol=1e-3)


def test_uw_libmtl_init_and_gradients():
    m = methods.create("uw", num_tasks=3)
    (s,) = m.trainable_parameters()
    torch.testing.assert_close(s.detach(), torch.full((3,), -0.5))
    g, info = step(m, [1.0, 1.0, 1.0])
    w = math.exp(0.5) / 2  # 1 / (2 e^{-0.5}) = 0.82436
    torch.testing.assert_close(info["weights"], torch.full((3,), w))
    torch.testing.assert_close(g, w * A)
    # d/ds_t [L_t / (2 e^s_t) + s_t / 2] = -L_t / (2 e^s_t) + 1/2
    torch.testing.assert_close(s.grad, -w * A + 0.5)


def test_dwa_epoch_level_weights():
    m = methods.create("dwa", num_tasks=3)
    m.on_epoch_start(0)
    _, i0 = step(m, [1.0, 1.0, 1.0])  # L = (1, 2, 4)
    m.on_epoch_end(0)
    m.on_epoch_start(1)
    _, i1 = step(m, [0.5, 0.5, 0.25])  # L = (0.5, 1, 1)
    _, _ = step(m, [0.5, 1.5, 0.75])  # L = (0.5, 3, 3) -> epoch-1 mean (0.5, 2, 2)
    m.on_epoch_end(1)
    m.on_epoch_start(2)
    g, i2 = step(m, [1.0, 1.0, 1.0])
    torch.testing.assert_close(i0["weights"], torch.ones(3))
    torch.testing.assert_close(i1["weights"], torch.ones(3))
    # ratio = (0.5/1, 2/2, 2/4) = (0.5, 1, 0.5); w = 3 softmax(ratio / 2)
    e = [math.exp(0.25), math.exp(0.5), math.exp(0.25)]
    expected = torch.tensor([3 * v / sum(e) for v in e])
    torch.testing.assert_close(i2["weights"], expected)
    torch.testing.assert_close(g, expected * A)


def test_dwa_missing_history_raises():
    m = methods.create("dwa", num_tasks=3)
    m.on_epoch_start(2)
    with pytest.raises(RuntimeError, match="needs the mean losses"):
        step(m, [1.0, 1.0, 1.0])


def test_imtl_l_scales():
    m = methods.create("imtl_l", num_tasks=3)
    (s,) = m.trainable_parameters()
    with torch.no_grad():
        s.copy_(torch.tensor([0.0, math.log(2), -math.log(2)]))
    g, info = step(m, [1.0, 1.0, 1.0])
    torch.testing.assert_close(info["weights"], torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(g, torch.tensor([1.0, 4.0, 2.0]))  # e^s a
    torch.testing.assert_close(s.grad, torch.tensor([0.0, 3.0, 1.0]))  # e^s L - 1


def test_stch_warmup_nadir_and_tchebycheff():
    m = methods.create("stch", num_tasks=3, mu=1.0, warmup_epoch=1)
    m.on_epoch_start(0)
    g0, _ = step(m, [1.0, 2.0, 4.0])  # sum log L: grad p_t = 1/p_t
    torch.testing.assert_close(g0, torch.tensor([1.0, 0.5, 0.25]))
    m.on_epoch_end(0)
    m.on_epoch_start(1)
    step(m, [1.0, 0.25, 1.0])  # L = (1, 0.5, 4)
    step(m, [1.0, 0.75, 3.0])  # L = (1, 1.5, 12) -> nadir (1, 1, 8)
    m.on_epoch_end(1)
    assert m.nadir is None
    m.on_epoch_start(2)
    g, info = step(m, [1.0, 1.0, 1.0])  # L = (1, 2, 4); L / nadir = (1, 2, 0.5)
    torch.testing.assert_close(m.nadir, torch.tensor([1.0, 1.0, 8.0]))
    expected = 3 * torch.tensor([1.0, 2.0, 0.5]) / 3.5  # 3 softmax(log(L/nadir) / mu)
    torch.testing.assert_close(info["weights"], expected)
    torch.testing.assert_close(g, expected)  # d/dp_t log(a_t p_t / n_t) = 1/p_t = 1


def test_famo_loss_and_logit_update():
    m = methods.create("famo", num_tasks=3)
    g, info = step(m, [1.0, 1.0, 1.0])  # L = (1, 2, 4); z = 1/3; c = (1 + 1/2 + 1/4) / 3
    c = 1.75 / 3
    torch.testing.assert_close(info["weights"], torch.full((3,), (1 / 3) / c))
    torch.testing.assert_close(g, torch.full((3,), (1 / 3) / c))  # d/dp log(a p) = 1
    m.after_step(torch.tensor([0.5, 2.0, 2.0]))
    # delta = log(prev) - log(new) = (log 2, 0, log 2); J_softmax^T delta = z (delta - z.delta)
    d = torch.tensor([math.log(2), 0.0, math.log(2)])
    grad_w = (d - d.mean()) / 3
    torch.testing.assert_close(m.w.grad, grad_w)
    # Adam's first step moves each logit by lr * sign(grad) (w = 0, so weight decay adds nothing)
    torch.testing.assert_close(m.w.detach(), -0.025 * torch.sign(grad_w), rtol=0, atol=1e-6)


def test_igbv1_si_then_improvable_gap_weights():
    m = methods.create("igbv1", num_tasks=3)
    for e in range(2):
        m.on_epoch_start(e)
        g, info = step(m, [1.0, 1.0, 1.0])  # L = (1, 2, 4)
        torch.testing.assert_close(info["weights"], torch.ones(3))
        torch.testing.assert_close(g, torch.ones(3), rtol=1e-6, atol=1e-6)  # d log(a p) / dp = 1
        m.on_epoch_end(e)
    torch.testing.assert_close(m.base_losses, torch.tensor([1.0, 2.0, 4.0]))
    m.on_epoch_start(2)
    g, info = step(m, [1.0, 0.5, 1.0])  # L = (1, 1, 4): L / L_base = (1, 0.5, 1)
    e = [math.e, math.exp(0.5), math.e]
    expected = torch.tensor([3 * v / sum(e) for v in e])
    torch.testing.assert_close(info["weights"], expected)
    torch.testing.assert_close(g, expected / torch.tensor([1.0, 0.5, 1.0]), rtol=1e-5, atol=1e-6)


def test_stl_and_si():
    m = methods.create("stl", num_tasks=3, task=1)
    g, info = step(m, [1.0, 1.0, 1.0])
    torch.testing.assert_close(g, torch.tensor([0.0, 2.0, 0.0]))
    torch.testing.assert_close(info["weights"], torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError):
        methods.create("stl", num_tasks=3, task=3)
    g, _ = step(methods.create("si", num_tasks=3), [1.0, 2.0, 4.0])
    torch.testing.assert_close(g, torch.tensor([1.0, 0.5, 0.25]), rtol=1e-6, atol=1e-7)


MINE = ["gls", "rlw", "uw", "dwa", "imtl_l", "stch", "famo", "igbv1", "igbv2", "stl", "si", "combo",
        "db_mtl", "db_mtl_rep"]
QUICK = {"famo", "combo", "db_mtl", "igbv2"}


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in MINE])
def test_trains_through_the_runner(name, tmp_path):
    from mtl.run import entry as train

    run_dir = train.run([f"method={name}", "benchmark=synthetic", "logger=none", "trainer.epochs=3",
                         "trainer.max_steps_per_epoch=2", "trainer.progress=false", f"run.root={tmp_path}"])
    assert (run_dir / "summary.json").exists()
