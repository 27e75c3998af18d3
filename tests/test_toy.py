"""The CAGrad / Nash-MTL toy problem: objective values, runner, trajectories script."""
import pytest
import torch

from mtl.benchmarks.toy import OFFSET, ToyPoint, objectives, toy_losses
from mtl.campaigns.toy_trajectories import trajectory


def test_objectives_hand_computed():
    # at x = (0, 0): c1 = c2 = 0 -> both objectives are 0
    assert torch.allclose(objectives(torch.zeros(2)), torch.zeros(2))
    # at x = (-7, 8): c1 = tanh(4), f1_log = log|0 - tanh(-8)| + 6
    x = torch.tensor([-7.0, 8.0])
    c1 = torch.tanh(torch.tensor(4.0))
    f1 = (torch.log(torch.tanh(torch.tensor(8.0))) + 6) * c1
    assert objectives(x)[0] == pytest.approx(float(f1), rel=1e-6)


def test_losses_are_shifted_nonnegative_with_unchanged_gradients():
    model = ToyPoint([-8.5, -5.0])
    losses = toy_losses(model)
    assert (losses >= 0).all()
    g_shift = torch.autograd.grad(losses.sum(), model.x)[0]
    g_raw = torch.autograd.grad(objectives(model.x).sum(), model.x)[0]
    assert torch.allclose(g_shift, g_raw) and OFFSET == 20.0


def test_runner_with_a_log_method(train):
    path = train(["benchmark=toy", "method=db_mtl", "trainer.epochs=2", "benchmark.build.steps_per_epoch=50"])
    assert (path / "summary.json").exists()


def test_trajectories_stay_finite_for_log_methods():
    for name in ("famo", "db_mtl", "ew"):
        path = trajectory(name, (-8.5, -5.0), steps=200, lr=1e-2, scale=1.0)
        assert torch.isfinite(path).all() and path.shape == (201, 2)
