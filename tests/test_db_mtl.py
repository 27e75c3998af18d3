"""DB-MTL: hand-computed EMA / alpha sequences, the equal-magnitude promise, head gradients,
the Table 5 / Fig. 5 knobs and the rep-grad variant."""
import math

import pytest
import torch
from torch import nn

from mtl import methods
from mtl.errors import InvalidCombination
from mtl.engine import Representation


def linear_step(m, C):
    """Losses L_t = C_t . theta (identity transform): the task gradients are exactly the rows of C."""
    theta = nn.Parameter(torch.zeros(C.shape[1], dtype=torch.float64))
    info = m.backward(C.double() @ theta + 1.0, [theta], [])
    return theta.grad, info


def create(**kw):
    kw.setdefault("loss_transform", "identity")
    return methods.create("db_mtl", num_tasks=kw.pop("T", 2), **kw)


def test_three_step_sequence_max():
    m = create()
    # step 1: g1 = (3, 0), g2 = (0, 1); buffer = 0.1 g (zero init, no bias correction)
    d, info = linear_step(m, torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(m.grad_buffer, torch.tensor([[0.3, 0.0], [0.0, 0.1]], dtype=torch.float64))
    # u = (0.3, 0.1); alpha_t = 0.3 / (u_t + 1e-8) -> (1, 3); update = (0.3, 0.3)
    torch.testing.assert_close(d, torch.tensor([0.3 * 0.3 / (0.3 + 1e-8), 0.3 * 0.1 / (0.1 + 1e-8)], dtype=torch.float64))
    # step 2: same gradients: buffer = 0.9 * 0.1 g + 0.1 g = 0.19 g
    d, _ = linear_step(m, torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(d, torch.tensor([0.57, 0.57], dtype=torch.float64))
    # step 3: g1 = (0, 4), g2 = (1, 0): b1 = (0.513, 0.4), b2 = (0.1, 0.171)
    d, info = linear_step(m, torch.tensor([[0.0, 4.0], [1.0, 0.0]]))
    u1, u2 = math.sqrt(0.513 ** 2 + 0.4 ** 2), math.sqrt(0.1 ** 2 + 0.171 ** 2)
    expected = [0.513 + u1 / u2 * 0.1, 0.4 + u1 / u2 * 0.171]
    torch.testing.assert_close(d, torch.tensor(expected, dtype=torch.float64), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(info["buffer_norms"], torch.tensor([u1, u2], dtype=torch.float64))
    assert m.db_step == 3 and m.engine.backward_passes == 6


@pytest.mark.parametrize("alpha,a_k", [("max", 0.4), ("min", 0.1), ("mean", 0.7 / 3), ("median", 0.2), (2.5, 2.5)])
def test_alpha_strategies(alpha, a_k):
    m = create(T=3, alpha=alpha)
    # orthogonal gradients with norms (4, 1, 2): step-1 buffer norms (0.4, 0.1, 0.2)
    d, info = linear_step(m, torch.diag(torch.tensor([4.0, 1.0, 2.0])))
    torch.testing.assert_close(d, torch.full((3,), a_k, dtype=torch.float64), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(info["alpha_k"].double(), torch.tensor(a_k, dtype=torch.float64))


def test_median_even_number_of_tasks_is_mean_of_middle_two():
    m = create(T=4, alpha="median")
    d, _ = linear_step(m, torch.diag(torch.tensor([4.0, 1.0, 2.0, 8.0])))
    torch.testing.assert_close(d, torch.full((4,), 0.3, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_invalid_alpha_and_beta():
    for bad in ("maximum", True, -1.0):
        with pytest.raises(ValueError):
            create(alpha=bad)
    with pytest.raises(ValueError):
        create(beta=1.0)


def test_beta_sigma_decay():
    # beta_k = 0.9 / sqrt(k): 0.9, 0.63640, 0.51962; constant gradient g = e1 (T = 1)
    m = methods.create("db_mtl", num_tasks=1, loss_transform="identity", beta_sigma=0.5)
    b = 0.0
    for k in (1, 2, 3):
        linear_step(m, torch.tensor([[1.0, 0.0]]))
        beta_k = 0.9 / math.sqrt(k)
        b = beta_k * b + (1 - beta_k) * 1.0
        torch.testing.assert_close(m.grad_buffer[0, 0].item(), b, rtol=1e-12, atol=1e-12)
    assert abs(b - 0.702387) < 1e-6  # 0.1 -> 0.42724 -> 0.70239


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(3))
        self.x, self.y = torch.randn(8, 4), torch.randn(8, 3)

    def losses(self, rep_grad=False):
        h = self.enc(self.x)
        rep = Representation.split(h) if rep_grad else None
        h = rep.leaf if rep_grad else h
        sc = (1.0, 100.0, 0.01)
        return torch.stack([((self.heads[t](h).squeeze(-1) - self.y[:, t]) ** 2).mean() * sc[t] for t in range(3)]), rep


def test_equal_magnitudes_and_head_grads_of_log_losses():
    net = Net()
    m = methods.create("db_mtl", num_tasks=3)
    shared, heads = list(net.enc.parameters()), list(net.heads.parameters())
    for _ in range(3):
        for p in net.parameters():
            p.grad = None
        losses, _ = net.losses()
        ref_heads = [torch.autograd.grad(torch.log(losses[t] + 1e-8), list(net.heads[t].parameters()), retain_graph=True)
                     for t in range(3)]
        G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(torch.log(losses[t] + 1e-8), shared,
                                                                                retain_graph=True)]) for t in range(3)])
        info = m.backward(losses, shared, heads)
        # every task contributes a vector of norm max_s u_s
        contrib = info["buffer_coeffs"][:, None] * m.grad_buffer
        norms = contrib.norm(dim=1)
        torch.testing.assert_close(norms, torch.full((3,), float(info["buffer_norms"].max())), rtol=1e-5, atol=0)
        flat = torch.cat([p.grad.reshape(-1) for p in shared])
        torch.testing.assert_close(flat, contrib.sum(0), rtol=1e-5, atol=1e-7)
        for t in range(3):
            for p, g in zip(net.heads[t].parameters(), ref_heads[t]):
                torch.testing.assert_close(p.grad, g)
    # the EMA really holds the log-loss gradients: buffer after 3 identical steps = 0.271 G
    torch.testing.assert_close(m.grad_buffer, 0.271 * G, rtol=1e-4, atol=1e-7)


def test_table5_ablation_knobs():
    shared_of = lambda net: torch.cat([p.grad.reshape(-1) for p in net.enc.parameters()])
    # log + no balancing = SI
    a, b = Net(), Net()
    methods.create("db_mtl", num_tasks=3, balance_grads=False).backward(a.losses()[0], list(a.enc.parameters()), list(a.heads.parameters()))
    methods.create("si", num_tasks=3).backward(b.losses()[0], list(b.enc.parameters()), list(b.heads.parameters()))
    torch.testing.assert_close(shared_of(a), shared_of(b))
    # identity + balancing: gradients of the raw losses get balanced
    c = Net()
    m = methods.create("db_mtl", num_tasks=3, loss_transform="identity")
    losses = c.losses()[0]
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], list(c.enc.parameters()), retain_graph=True)])
                     for t in range(3)])
    m.backward(losses, list(c.enc.parameters()), list(c.heads.parameters()))
    u = (0.1 * G).norm(dim=1)
    torch.testing.assert_close(shared_of(c), ((u.max() / (u + 1e-8))[:, None] * 0.1 * G).sum(0), rtol=1e-5, atol=1e-8)


def test_faithful_db_mtl_forbids_rep_grad():
    with pytest.raises(InvalidCombination):
        methods.create("db_mtl", num_tasks=3, rep_grad=True)


def test_rep_variant_weights_and_encoder_gradient():
    net, ref = Net(), Net()
    m = methods.create("db_mtl_rep", num_tasks=3)
    assert m.rep_grad
    buf = torch.zeros(3, 6)
    for _ in range(2):
        for p in list(net.parameters()) + list(ref.parameters()):
            p.grad = None
        losses, rep = net.losses(rep_grad=True)
        info = m.backward(losses, list(net.enc.parameters()), list(net.heads.parameters()), rep=rep)
        assert m.engine.backward_passes % 3 == 0  # T passes through the heads only
        # reference: per-sample representation gradients of log L_t, EMA of their batch sums
        rl, _ = ref.losses()
        h = ref.enc(ref.x)
        hl = h.detach().requires_grad_()
        sc = (1.0, 100.0, 0.01)
        rl = torch.stack([((ref.heads[t](hl).squeeze(-1) - ref.y[:, t]) ** 2).mean() * sc[t] for t in range(3)])
        per = torch.stack([torch.autograd.grad(torch.log(rl[t] + 1e-8), hl, retain_graph=True)[0] for t in range(3)])
        buf = 0.9 * buf + 0.1 * per.sum(1)
        u = buf.norm(dim=1)
        w = u.max() / (u + 1e-8)
        torch.testing.assert_close(info["weights"], w, rtol=1e-5, atol=0)
        h.backward(torch.einsum("t,tbf->bf", w, per))
        for p, q in zip(net.enc.parameters(), ref.enc.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
