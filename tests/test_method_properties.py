"""Properties every registered method must have (parametrised over `mtl.methods.available()`):
finite gradients of the right shape on shared and task parameters, a diagnostics dict,
determinism under a torch seed, and an exact state_dict round trip."""
import copy

import pytest
import torch
from torch import nn

from mtl import methods
from mtl.errors import InvalidCombination
from mtl.engine import Representation

T = 3
ALL = methods.available()


class Tiny(nn.Module):
    """Linear encoder with BatchNorm, T linear heads; splits the representation in rep-grad mode."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(T))

    def losses(self, x, y, rep_grad=False):
        h = self.enc(x)
        rep = None
        if rep_grad:
            rep = Representation.split(h)
            h = rep.leaf
        scales = torch.tensor([1.0, 10.0, 0.1])
        losses = torch.stack([((self.heads[t](h).squeeze(-1) - y[:, t]) ** 2).mean() * scales[t] for t in range(T)])
        return losses, rep


def batches(k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(7, 5, generator=g), torch.randn(7, T, generator=g)) for _ in range(k)]


def make(name):
    torch.manual_seed(0)
    return Tiny(), methods.create(name, num_tasks=T)


def step(model, method, data):
    """One trainer-like step (no optimizer): returns diagnostics and a copy of every gradient."""
    for p in list(model.parameters()) + method.trainable_parameters():
        p.grad = None
    k = method.batches_per_step
    per = [model.losses(x, y, method.rep_grad) for x, y in data[:k]]
    losses = per[0][0] if k == 1 else torch.stack([l for l, _ in per])
    rep = per[0][1] if k == 1 else None
    info = method.backward(losses, list(model.enc.parameters()), list(model.heads.parameters()), rep=rep)
    grads = [None if p.grad is None else p.grad.clone() for p in list(model.parameters()) + method.trainable_parameters()]
    if method.wants_post_step_losses:
        with torch.no_grad():
            new = model.losses(*data[0])[0] * 0.9
        method.after_step(new)
    return info, grads


def run_epochs(model, method, epochs=2, steps=2):
    for e in range(epochs):
        method.on_epoch_start(e)
        for s in range(steps):
            step(model, method, batches(method.batches_per_step, seed=100 * e + s))
        method.on_epoch_end(e)
    method.on_epoch_start(epochs)


@pytest.mark.parametrize("name", ALL)
def test_grads_finite_and_shaped(name):
    model, method = make(name)
    method.on_epoch_start(0)
    info, _ = step(model, method, batches(method.batches_per_step))
    assert isinstance(info, dict)
    for p in model.enc.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.enc.parameters()), f"{name}: encoder got no gradient"
    for p in model.heads.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all(), name
    for p in method.trainable_parameters():  # may be untouched in a warm-up epoch (GradNorm epoch 0)
        assert p.grad is None or (p.grad.shape == p.shape and torch.isfinite(p.grad).all()), name


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_seed(name):
    out = []
    for _ in range(2):
        model, method = make(name)
        torch.manual_seed(7)
        run_epochs(model, method)
        torch.manual_seed(8)
        out.append(step(model, method, batches(method.batches_per_step, seed=5))[1])
    for a, b in zip(*out):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name):
    model, method = make(name)
    torch.manual_seed(3)
    run_epochs(model, method)
    state = copy.deepcopy(method.state_dict())
    model2 = copy.deepcopy(model)
    method2 = methods.create(name, num_tasks=T)
    method2.load_state_dict(state)
    assert method2.epoch == method.epoch and method2.step_count == method.step_count
    data = batches(method.batches_per_step, seed=9)
    results = []
    for mdl, mth in ((model, method), (model2, method2)):
        torch.manual_seed(11)
        results.append(step(mdl, mth, data))
        torch.manual_seed(12)
        results.append(step(mdl, mth, batches(method.batches_per_step, seed=10)))
    for i in (0, 1):
        for a, b in zip(results[i][1], results[i + 2][1]):
            assert (a is None) == (b is None), name
            if a is not None:
                torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name}: state round trip differs")


@pytest.mark.parametrize("name", [n for n in ALL if not methods.get_class(n).supports_rep_grad and n != "combo"])
def test_rep_grad_forbidden_raises(name):
    with pytest.raises(InvalidCombination):
        methods.create(name, num_tasks=T, rep_grad=True)
