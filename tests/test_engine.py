"""Gradient engine: loop and batched Jacobians equal an independent reference, pass counting, auto."""
import pytest
import torch
from torch import nn
from torch.func import functional_call

from mtl.engine import GradientEngine, accumulate_grads, assign_flat_grad

T = 3


def tiny(seed=0):
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh())
    heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(T))
    x = torch.randn(6, 5)
    y = torch.randn(6, T)
    return enc, heads, x, y


def losses_of(enc, heads, x, y):
    h = enc(x)
    return torch.stack([((heads[t](h).squeeze(-1) - y[:, t]) ** 2).mean() for t in range(T)])


def reference_jacobian(enc, heads, x, y):
    """d losses / d shared params via torch.autograd.functional.jacobian of a functional forward."""
    names = [n for n, _ in enc.named_parameters()]
    params = tuple(p.detach().clone() for _, p in enc.named_parameters())
    buffers = {n: b.clone() for n, b in enc.named_buffers()}

    def f(*ps):
        h = functional_call(enc, ({**dict(zip(names, ps)), **buffers},), (x,))
        return torch.stack([((heads[t](h).squeeze(-1) - y[:, t]) ** 2).mean() for t in range(T)])

    jac = torch.autograd.functional.jacobian(f, params)
    return torch.cat([j.reshape(T, -1) for j in jac], dim=1)


@pytest.mark.parametrize("mode", ["loop", "batched", "auto"])
def test_jacobian_matches_reference_with_batchnorm(mode):
    enc, heads, x, y = tiny()
    enc.train()
    ref = reference_jacobian(enc, heads, x, y)
    eng = GradientEngine(mode)
    shared, task = list(enc.parameters()), list(heads.parameters())
    tg = eng.jacobian(losses_of(enc, heads, x, y), shared, task)
    assert tg.shared.shape == (T, sum(p.numel() for p in shared))
    torch.testing.assert_close(tg.shared, ref, rtol=1e-5, atol=1e-6)
    # head grads: task t's loss reaches only head t
    losses = losses_of(enc, heads, x, y)
    for t in range(T):
        own = torch.autograd.grad(losses[t], list(heads[t].parameters()), retain_graph=True)
        for i, p in enumerate(task):
            g = tg.task[t][i]
            owner = i // 2  # two tensors (weight, bias) per head
            if owner == t:
                torch.testing.assert_close(g, own[i % 2], rtol=1e-5, atol=1e-7)
            else:  # loop: zeros (the stack's backward reaches every head), batched: None
                assert g is None or not g.any()


def test_backward_pass_counting():
    enc, heads, x, y = tiny()
    loop, batched = GradientEngine("loop"), GradientEngine("batched")
    loop.jacobian(losses_of(enc, heads, x, y), list(enc.parameters()))
    batched.jacobian(losses_of(enc, heads, x, y), list(enc.parameters()))
    assert loop.backward_passes == T
    assert batched.backward_passes == 1
    loop.jacobian(losses_of(enc, heads, x, y), list(enc.parameters()))
    assert loop.backward_passes == 2 * T


def test_auto_picks_one_and_gives_identical_results():
    enc, heads, x, y = tiny()
    auto, loop = GradientEngine("auto"), GradientEngine("loop")
    assert auto.chosen is None
    first = auto.jacobian(losses_of(enc, heads, x, y), list(enc.parameters()))
    assert auto.chosen in ("loop", "batched")
    second = auto.jacobian(losses_of(enc, heads, x, y), list(enc.parameters()))
    ref = loop.jacobian(losses_of(enc, heads, x, y), list(enc.parameters()))
    torch.testing.assert_close(first.shared, ref.shared, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(second.shared, ref.shared, rtol=1e-5, atol=1e-7)
    assert auto.backward_passes == 1 + T + (T if auto.chosen == "loop" else 1)


def test_weighted_head_grads_and_assign_helpers():
    enc, heads, x, y = tiny()
    tg = GradientEngine("loop").jacobian(losses_of(enc, heads, x, y), list(enc.parameters()), list(heads.parameters()))
    w = torch.tensor([1.0, 2.0, 3.0])
    weighted = tg.task_param_grads(w)
    plain = tg.task_param_grads()
    for i, (gw, gp) in enumerate(zip(weighted, plain)):
        torch.testing.assert_close(gw, gp * w[i // 2])
    p = nn.Parameter(torch.zeros(2, 2))
    assign_flat_grad([p], torch.arange(4.0))
    assign_flat_grad([p], torch.ones(4))
    torch.testing.assert_close(p.grad, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(ValueError):
        assign_flat_grad([nn.Parameter(torch.zeros(2, 2))], torch.ones(5))
    accumulate_grads([p], [None])
    accumulate_grads([p], [torch.ones(2, 2)])
    torch.testing.assert_close(p.grad, torch.tensor([[2.0, 3.0], [4.0, 5.0]]))


def test_batched_engine_without_a_vmap_rule_says_to_use_the_loop(monkeypatch):
    """On CUDA, cuDNN's LSTM backward has no batching rule (QM9's Set2Set): one line, not a traceback."""
    import pytest

    from mtl.engine import GradientEngine
    from mtl.errors import InvalidCombination

    real = torch.autograd.grad

    def no_rule(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented for aten::_cudnn_rnn_backward. We could not "
                               "generate a fallback.")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_rule)
    w = torch.nn.Parameter(torch.ones(3))
    losses = torch.stack([w.sum(), (w ** 2).sum()])
    with pytest.raises(InvalidCombination, match="aten::_cudnn_rnn_backward.*grad_engine=loop"):
        GradientEngine("batched").jacobian(losses, [w])
    auto = GradientEngine("auto")
    with pytest.warns(UserWarning, match="using the loop"):
        auto.jacobian(losses, [w])
    assert auto.chosen == "loop"
