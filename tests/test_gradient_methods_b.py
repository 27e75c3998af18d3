"""ExcessMTL, SDMGrad, MoDo weight updates (hand-computed T=2, D=2 cases), the simplex projection,
multi-batch Jacobians, and every method of this group through `backward` on a tiny model."""
import warnings

import pytest
import torch

from mtl import methods
from mtl.errors import InvalidCombination
from mtl.methods._multibatch import row_jacobians
from mtl.methods._simplex import project_simplex

D64 = torch.float64


# ---- simplex projection ----------------------------------------------------------------------
@pytest.mark.parametrize("v, expected", [
    ([0.8, 0.6, -1.0], [0.6, 0.4, 0.0]),   # theta = (0.8 + 0.6 - 1) / 2 = 0.2
    ([1.0, 1.0], [0.5, 0.5]),
    ([2.0, 0.0], [1.0, 0.0]),
    ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]),    # already on the simplex
    ([-4.06139985, -3.25988465], [0.0992424, 0.9007576]),
])
def test_project_simplex_hand_cases(v, expected):
    out = project_simplex(torch.tensor(v, dtype=D64))
    assert torch.allclose(out, torch.tensor(expected, dtype=D64), atol=1e-7)


def test_project_simplex_is_the_closest_simplex_point():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        v = torch.randn(5, generator=g, dtype=D64) * 3
        p = project_simplex(v)
        assert torch.all(p >= 0) and torch.isclose(p.sum(), torch.tensor(1.0, dtype=D64))
        others = torch.distributions.Dirichlet(torch.ones(5, dtype=D64)).sample((200,))
        assert torch.all((others - v).norm(dim=1) >= (p - v).norm() - 1e-12)


def test_project_simplex_radius_and_errors():
    assert torch.allclose(project_simplex(torch.tensor([3.0, 1.0]), s=2.0), torch.tensor([2.0, 0.0]))
    with pytest.raises(ValueError):
        project_simplex(torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError):
        project_simplex(torch.ones(2), s=0.0)


# ---- hand-computed weight updates ------------------------------------------------------------
def test_excess_mtl_two_steps_by_hand():
    m = methods.create("excess_mtl", num_tasks=2)
    G1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D64)
    agg = m.aggregate(G1, torch.ones(2))
    # first step: risks [1/sqrt(1), 4/sqrt(4)] = [1, 2] become the normaliser; weights stay 1
    assert torch.allclose(agg.weights, torch.ones(2, dtype=D64))
    assert torch.allclose(m.initial_risk, torch.tensor([1.0, 2.0], dtype=D64), atol=1e-6)
    G2 = torch.tensor([[3.0, 0.0], [0.0, 2.0]], dtype=D64)
    agg = m.aggregate(G2, torch.ones(2))
    # accumulators [10, 8]: risks [9/sqrt(10), 4/sqrt(8)] = [2.846050, 1.414214]; / [1, 2]
    # -> [2.846050, 0.707107]; w = exp(0.01 r) renormalised to sum 2 = [1.010692, 0.989308]
    assert torch.allclose(agg.weights, torch.tensor([1.010692, 0.989308], dtype=D64), atol=2e-6)


def test_modo_one_step_by_hand():
    m = methods.create("modo", num_tasks=2, gamma=0.1, rho=0.1)
    G1 = torch.eye(2, dtype=D64)
    G2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=D64)
    lam = m.update_weights(G1, G2)
    # G2^T lam = [1, .5]; G1 @ . = [1, .5]; + .1 lam = [1.05, .55]; lam - .1 * . = [.395, .445]
    # projection adds (1 - .84) / 2 = .08 -> [.475, .525]
    assert torch.allclose(lam, torch.tensor([0.475, 0.525], dtype=D64), atol=1e-12)
    G3 = torch.tensor([[1.0, 1.0], [3.0, -1.0]], dtype=D64)
    assert torch.allclose(lam @ G3, torch.tensor([2.05, -0.05], dtype=D64), atol=1e-12)


def test_sdmgrad_inner_sgd_with_momentum_by_hand():
    m = methods.create("sdmgrad", num_tasks=2, niter=2)
    G1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D64)
    G2 = torch.eye(2, dtype=D64)
    w = m.update_weights(G1, G2)
    # GG = diag(1, 2); scale = (1 + sqrt 2)/2, GG / scale^2 = diag(.686292, 1.372583); Gg = row means
    # step 1: grad = [.446089, .892179]; w - 5 grad -> project -> [1, 0]
    # step 2: grad = [.789235, .205887]; buf = .5 * grad1 + grad2 = [1.012280, .651977]
    #         w = [1, 0] - 5 buf = [-4.061400, -3.259885] -> project -> [.099242, .900758]
    assert torch.allclose(w, torch.tensor([0.0992424, 0.9007576], dtype=D64), atol=1e-6)
    Gz = torch.tensor([[1.0, 1.0], [3.0, -1.0]], dtype=D64)
    # (w @ Gz + .3 * mean(Gz)) / 1.3 = ([2.801515, -.801515] + [.6, 0]) / 1.3
    assert torch.allclose(m.direction(Gz, w), torch.tensor([2.616550, -0.616550], dtype=D64), atol=1e-6)


def test_sdmgrad_one_inner_step_and_state():
    m = methods.create("sdmgrad", num_tasks=2, niter=1)
    w = m.update_weights(torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D64), torch.eye(2, dtype=D64))
    assert torch.allclose(w, torch.tensor([1.0, 0.0], dtype=D64))
    assert torch.equal(m.get_extra_state()["w"], w)  # warm start for the next step is saved


# ---- tiny model ------------------------------------------------------------------------------
class Tiny(torch.nn.Module):
    def __init__(self, T=3):
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Linear(4, 5)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(5, 1) for _ in range(T))

    def losses(self, seed):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, len(self.heads), generator=g)
        h = torch.tanh(self.enc(x))
        return torch.stack([((head(h).squeeze(1) - y[:, t]) ** 2).mean() for t, head in enumerate(self.heads)])

    def shared(self):
        return list(self.enc.parameters())

    def task(self):
        return list(self.heads.parameters())


def _flat_jac(losses, params):
    rows = []
    for t in range(losses.shape[0]):
        gs = torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params)]))
    return torch.stack(rows)


def _grads(params):
    return torch.cat([p.grad.reshape(-1) for p in params])


SINGLE = ["nash_mtl", "fairgrad", "excess_mtl", "upgrad"]


@pytest.mark.parametrize("name", SINGLE)
def test_single_batch_methods_fill_expected_grads(name):
    model = Tiny()
    losses = model.losses(0)
    Gs = _flat_jac(losses, model.shared())
    Gh = _flat_jac(losses, model.task())  # head grads per task (zero outside its head)
    m = methods.create(name, num_tasks=3)
    info = m.backward(losses, model.shared(), model.task())
    w = info["weights"]
    expected_shared = w @ Gs
    if name == "nash_mtl":  # clipped to max_norm 1
        expected_shared = expected_shared * min(1.0, 1.0 / (expected_shared.norm().item() + 1e-6))
    expected_heads = Gh.sum(0) if name == "upgrad" else w @ Gh
    for p in model.shared() + model.task():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert torch.allclose(_grads(model.shared()), expected_shared, atol=1e-5)
    assert torch.allclose(_grads(model.task()), expected_heads, atol=1e-5)
    assert m.engine.backward_passes == 3
    if name in ("nash_mtl", "fairgrad", "upgrad"):
        assert not torch.allclose(w, w[0].expand(3))  # the solver produced non-uniform weights


def test_nash_skips_jacobian_between_weight_updates():
    model = Tiny()
    m = methods.create("nash_mtl", num_tasks=3, update_weights_every=2)
    alpha = m.backward(model.losses(0), model.shared(), model.task())["weights"]
    for p in model.parameters():
        p.grad = None
    losses = model.losses(1)
    expected = alpha @ _flat_jac(losses, model.shared())
    expected = expected * min(1.0, 1.0 / (expected.norm().item() + 1e-6))
    info = m.backward(losses, model.shared(), model.task())
    assert torch.equal(info["weights"], alpha)
    assert m.engine.backward_passes == 3 + 1  # one weighted backward on the second step
    assert torch.allclose(_grads(model.shared()), expected, atol=1e-5)


@pytest.mark.parametrize("name, head_scale", [("modo", 1 / 3), ("sdmgrad", 1.0)])
def test_multi_batch_methods_fill_expected_grads(name, head_scale):
    model = Tiny()
    rows = [model.losses(s) for s in (0, 1, 2)]
    Gs = [_flat_jac(r, model.shared()) for r in rows]
    heads = sum(_flat_jac(r, model.task()).sum(0) for r in rows) * head_scale
    m = methods.create(name, num_tasks=3)
    ref = methods.create(name, num_tasks=3)
    w = ref.update_weights(Gs[0] if name == "modo" else Gs[1], Gs[1] if name == "modo" else Gs[2])
    expected = w @ Gs[2] if name == "modo" else ref.direction(Gs[0], w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.stack(rows): no fallback warning
        info = m.backward(torch.stack(rows), model.shared(), model.task())
    assert torch.allclose(info.get("sdmgrad_w", info["weights"]), w, atol=1e-6)
    assert torch.allclose(_grads(model.shared()), expected, atol=1e-5)
    assert torch.allclose(_grads(model.task()), heads, atol=1e-5)
    assert m.engine.backward_passes == 9
    for p in model.parameters():
        assert torch.isfinite(p.grad).all()


def test_row_jacobians_fallback_matches_and_warns():
    model = Tiny()
    rows = [model.losses(s) for s in (0, 1, 2)]
    expected = [_flat_jac(r, model.shared()) for r in rows]
    losses = torch.cat(rows).view(3, 3)  # not a stack: each row's backward goes through the cat
    eng = methods.create("ew", num_tasks=3).engine
    with pytest.warns(UserWarning, match="not torch.stack"):
        got = row_jacobians(eng, losses, model.shared(), model.task())
    for g, e in zip(got, expected):
        assert torch.allclose(g.shared, e, atol=1e-6)


def test_multi_batch_losses_shape_checked():
    m = methods.create("modo", num_tasks=3)
    model = Tiny()
    with pytest.raises(ValueError, match="shape"):
        m.backward(model.losses(0), model.shared(), model.task())


@pytest.mark.parametrize("name", SINGLE + ["sdmgrad", "modo"])
def test_rep_grad_forbidden(name):
    with pytest.raises(InvalidCombination):
        methods.create(name, num_tasks=2, rep_grad=True)


@pytest.mark.parametrize("name", SINGLE + ["sdmgrad", "modo"])
def test_config_defaults_match_constructor(name):
    import pathlib

    import yaml

    cfg = yaml.safe_load((pathlib.Path(__file__).parents[1] / "configs" / "method" / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name
    m = methods.create(name, num_tasks=2, **cfg)
    assert m.name == name and not m.supports_rep_grad


@pytest.mark.parametrize("name", ["nash_mtl", "excess_mtl", "sdmgrad", "modo"])
def test_state_round_trip(name):
    model = Tiny()
    m = methods.create(name, num_tasks=3)
    losses = torch.stack([model.losses(s) for s in (0, 1, 2)]) if m.batches_per_step == 3 else model.losses(0)
    m.backward(losses, model.shared(), model.task())
    fresh = methods.create(name, num_tasks=3)
    fresh.load_state_dict(m.state_dict())
    for key in type(m)._state_attrs:
        a, b = getattr(m, key), getattr(fresh, key)
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), key


@pytest.mark.parametrize("name", ["nash_mtl", "modo"])
def test_runner_two_steps(train, name):
    import json

    run_dir = train(["benchmark=synthetic", f"method={name}", "seed=0", "trainer.epochs=1",
                     "trainer.max_steps_per_epoch=2"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backward_passes"] > 0
