"""`combo`: a loss-weighting method's per-task terms fed to a gradient method (IGB4MTL style)."""
import pytest
import torch
from torch import nn

from mtl import methods
from mtl.errors import InvalidCombination, InvalidValue
from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods.registry import _REGISTRY


class UnitSum(GradientMethod):
    """Test-only gradient method: sum of unit-normalised task gradients (weights 1/||g_t||)."""

    name = "test_unit_sum"
    supports_rep_grad = True

    def aggregate(self, G, losses):
        return Aggregate(weights=1.0 / G.norm(dim=1))


@pytest.fixture
def unit_sum(monkeypatch):
    monkeypatch.setitem(_REGISTRY, UnitSum.name, UnitSum)
    return UnitSum.name


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(3))
        self.x, self.y = torch.randn(8, 4), torch.randn(8, 3)
        self.epoch = 0

    def losses(self):
        h = self.enc(self.x)
        # task scales 1, 10, 100 that drift apart over epochs (so IGB's L / L_base is not uniform)
        return torch.stack([((self.heads[t](h).squeeze(-1) - self.y[:, t]) ** 2).mean() * 10.0 ** t
                            * (1 + 0.5 * self.epoch * t) for t in range(3)])

    def grads(self):
        return [p.grad.clone() for p in self.parameters()]


def run(net, m, epochs=3):
    for e in range(epochs):
        net.epoch = e
        m.on_epoch_start(e)
        for p in net.parameters():
            p.grad = None
        info = m.backward(net.losses(), list(net.enc.parameters()), list(net.heads.parameters()))
        m.on_epoch_end(e)
    return info


def test_combo_with_ew_equals_the_loss_method_alone():
    a, b = Net(), Net()
    run(a, methods.create("combo", num_tasks=3, loss={"name": "igbv1"}, grad={"name": "ew"}))
    run(b, methods.create("igbv1", num_tasks=3))
    for ga, gb in zip(a.grads(), b.grads()):
        torch.testing.assert_close(ga, gb)


def test_gradient_method_sees_the_weighted_terms(unit_sum):
    net = Net()
    m = methods.create("combo", num_tasks=3, loss={"name": "igbv1"}, grad={"name": unit_sum})
    info = run(net, m)  # epoch 2: IGBv1 weights are active (base from epoch 1)
    w = info["loss_weights"]
    assert not torch.allclose(w, torch.ones(3))
    losses = net.losses()
    terms = w * torch.log(losses + 1e-8)
    shared = list(net.enc.parameters())
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(terms[t], shared, retain_graph=True)])
                     for t in range(3)])
    expected = (G / G.norm(dim=1, keepdim=True)).sum(0)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected, rtol=1e-5, atol=1e-6)
    # heads: plain gradient of their own term w_t log L_t
    for t in range(3):
        ref = torch.autograd.grad(terms[t], list(net.heads[t].parameters()), retain_graph=True)
        for p, g in zip(net.heads[t].parameters(), ref):
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(info["weights"], 1.0 / G.norm(dim=1), rtol=1e-5, atol=0)


def test_loss_method_parameters_get_their_gradient(unit_sum):
    net = Net()
    m = methods.create("combo", num_tasks=3, loss={"name": "uw"}, grad={"name": unit_sum})
    (s,) = m.trainable_parameters()
    losses = net.losses().detach()
    m.on_epoch_start(0)
    m.backward(net.losses(), list(net.enc.parameters()), list(net.heads.parameters()))
    # IGB4MTL: the gradient method backpropagates sum_t a_t term_t, here a_t = 1/||g_t|| (its weights):
    # d/ds_t sum_t a_t [L_t / (2 e^s_t) + s_t / 2] = a_t (-L_t / (2 e^s_t) + 1/2)
    terms = net.losses() / (2 * torch.exp(s.detach())) + s.detach() / 2
    shared = list(net.enc.parameters())
    norms = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(terms[t], shared, retain_graph=True)]).norm()
                         for t in range(3)])
    torch.testing.assert_close(s.grad, (1.0 / norms) * (-losses / (2 * torch.exp(s.detach())) + 0.5), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("grad,scale", [("nash_mtl", 1.0), ("imtl_g", 1.0), ("mgda", 3.0), ("cagrad", None)])
def test_uw_parameters_get_the_gradient_of_the_weighted_objective_as_igb4mtl(grad, scale):
    """IGB4MTL trainer: weighted_losses = UW terms; gradient_weight_method.backward(weighted_losses)
    runs `sum(alpha_i * weighted_losses_i).backward()` (MGDA: alpha = n_tasks * sol; CAGrad:
    every term backpropagated unweighted), so logsigma.grad = alpha_t * d term_t / d s_t."""
    net = Net()
    m = methods.create("combo", num_tasks=3, loss={"name": "uw"}, grad={"name": grad})
    (s,) = m.trainable_parameters()
    with torch.no_grad():
        s.copy_(torch.tensor([0.3, -0.2, 0.1]))
    losses = net.losses().detach()
    m.on_epoch_start(0)
    info = m.backward(net.losses(), list(net.enc.parameters()), list(net.heads.parameters()))
    if scale is None:
        alpha = torch.ones(3)
    elif grad == "mgda":
        alpha = scale * info["grad/min_norm_weights"]
    else:
        alpha = scale * info["weights"]
    assert scale is None or not torch.allclose(alpha, torch.ones(3), atol=1e-3)  # differs from the plain sum
    hand = alpha * (-losses / (2 * torch.exp(s.detach())) + 0.5)
    torch.testing.assert_close(s.grad, hand.to(s.grad.dtype), rtol=1e-5, atol=1e-7)


def test_epoch_hooks_after_step_and_state(unit_sum):
    m = methods.create("combo", num_tasks=3, loss={"name": "famo"}, grad={"name": unit_sum})
    assert m.wants_post_step_losses
    net = Net()
    run(net, m, epochs=1)
    assert m.loss_method.epoch == 0 and m.grad_method.epoch == 0
    m.after_step(net.losses().detach() * torch.tensor([0.5, 1.0, 2.0]))
    assert m.loss_method.w.abs().sum() > 0
    m2 = methods.create("combo", num_tasks=3, loss={"name": "famo"}, grad={"name": unit_sum})
    m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.loss_method.w, m.loss_method.w)
    assert m2.loss_method.w_opt.state_dict()["state"][0]["step"] == 1
    assert m2.loss_method.step_count == 1


def test_invalid_combinations(unit_sum):
    with pytest.raises(InvalidCombination):
        methods.create("combo", num_tasks=3, loss={"name": unit_sum}, grad={"name": "ew"})
    with pytest.raises(InvalidCombination):  # EW cannot take representation gradients
        methods.create("combo", num_tasks=3, loss={"name": "igbv1"}, grad={"name": "ew"}, rep_grad=True)
    with pytest.raises(InvalidValue, match="method.loss.loss_transform=log"):  # set it on the parts
        methods.create("combo", num_tasks=3, loss_transform="log")
    with pytest.raises(KeyError):
        methods.create("combo", num_tasks=3, loss={"name": "nope"})
    if "modo" in methods.available():
        with pytest.raises(InvalidCombination):
            methods.create("combo", num_tasks=3, loss={"name": "ew"}, grad={"name": "modo"})


@pytest.mark.parametrize("grad", ["pcgrad", "mgda", "cagrad", "imtl_g", "nash_mtl"])
def test_igbv1_with_available_gradient_methods(grad):
    assert grad in methods.available()
    net = Net()
    m = methods.create("combo", num_tasks=3, loss={"name": "igbv1"}, grad={"name": grad})
    run(net, m)
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_combo_with_rep_grad_gradient_method(unit_sum):
    from mtl.engine import Representation

    net = Net()
    m = methods.create("combo", num_tasks=3, loss={"name": "si"}, grad={"name": unit_sum}, rep_grad=True)
    h = net.enc(net.x)
    rep = Representation.split(h)
    losses = torch.stack([((net.heads[t](rep.leaf).squeeze(-1) - net.y[:, t]) ** 2).mean() for t in range(3)])
    m.backward(losses, list(net.enc.parameters()), list(net.heads.parameters()), rep=rep)
    assert all(p.grad is not None for p in net.enc.parameters())
