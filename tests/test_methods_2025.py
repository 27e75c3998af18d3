"""ConFIG, DualProj, UW-SO and GO4Align: each step equal to a transcription of its reference
implementation (written here from the reference's code, independently of mtl/methods/), plus
hand-computed cases. UW-SO has no public code: hand-computed values of the paper's formula."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from qpsolvers import solve_qp

from mtl import methods
from mtl.methods.config_method import config_direction
from mtl.methods.go4align import kmeans_1d

D64 = torch.float64


def _conflicting(T, D, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(T, D, generator=g, dtype=dtype)
    G[1] = -0.7 * G[0] + 0.4 * G[1]  # a conflict
    return G


# ---- ConFIG: tum-pbs/ConFIG conflictfree/grad_operator.py, transcribed ------------------------
def _ref_unit_vector(v):
    with torch.no_grad():
        if v.norm() == 0:
            return torch.zeros_like(v)
        return v / v.norm()


def _ref_projection_length_rescale(target_vector, gradients):
    unit_target_vector = _ref_unit_vector(target_vector)
    length = torch.sum(torch.stack([torch.dot(grad_i, unit_target_vector) for grad_i in gradients]))
    return length * unit_target_vector


def _ref_config_update(grads, use_least_square=True):
    with torch.no_grad():
        weights = torch.ones(grads.shape[0], device=grads.device, dtype=grads.dtype)  # EqualWeight
        units = torch.nan_to_num((grads / (grads.norm(dim=1)).unsqueeze(1)), 0)
        if use_least_square:
            best_direction = torch.linalg.lstsq(units, weights).solution
        else:
            best_direction = torch.linalg.pinv(units) @ weights
        return _ref_projection_length_rescale(best_direction, grads)


def _ref_config_update_double(grad_1, grad_2):
    with torch.no_grad():
        norm_1 = grad_1.norm()
        norm_2 = grad_2.norm()
        unit_1 = grad_1 / norm_1
        unit_2 = grad_2 / norm_2
        cos_angle = torch.dot(grad_1, grad_2) / grad_1.norm() / grad_2.norm()
        or_2 = grad_1 - norm_1 * cos_angle * unit_2
        or_1 = grad_2 - norm_2 * cos_angle * unit_1
        unit_or1 = _ref_unit_vector(or_1)
        unit_or2 = _ref_unit_vector(or_2)
        weights = torch.ones(2, dtype=grad_1.dtype)
        coef_1 = torch.dot(unit_or2, unit_1) / (weights[0] / weights[1] * torch.dot(unit_or1, unit_2))
        coef_2 = 1
        best_direction = coef_1 * unit_or1 + coef_2 * unit_or2
        return _ref_projection_length_rescale(best_direction, torch.stack([grad_1, grad_2]))


def _ref_torchjd_config(matrix):
    """torchjd aggregation/_config.py ConFIG.forward (pref_vector None: SumWeighting, ones)."""
    weights = torch.ones(matrix.shape[0], dtype=matrix.dtype)
    units = torch.nan_to_num((matrix / (matrix.norm(dim=1)).unsqueeze(1)), 0.0)
    best_direction = torch.linalg.pinv(units) @ weights
    unit_target_vector = torch.nn.functional.normalize(best_direction, dim=0)
    length = torch.sum(matrix @ unit_target_vector)
    return length * unit_target_vector


@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_config_equals_conflictfree_bit_for_bit(T, seed):
    G = _conflicting(T, 40, seed)
    ref = _ref_config_update_double(G[0], G[1]) if T == 2 else _ref_config_update(G)
    got = methods.create("config", num_tasks=T).aggregate(G, torch.ones(T)).direction
    assert torch.equal(got, ref)
    # allow_simplified_model=false: the general least-squares path also for two tasks
    got = methods.create("config", num_tasks=T, allow_simplified_model=False).aggregate(G, torch.ones(T)).direction
    assert torch.equal(got, _ref_config_update(G))


@pytest.mark.parametrize("seed", range(4))
def test_config_pinv_equals_torchjd(seed):
    G = _conflicting(3, 40, seed)
    got = config_direction(G, simplified=False, solver="pinv")
    torch.testing.assert_close(got, _ref_torchjd_config(G), rtol=1e-6, atol=1e-7)


def test_config_hand_cases():
    # two orthogonal unit gradients: each orthogonal part is the other gradient, d = (1, 1)/sqrt 2,
    # length = 2 / sqrt 2: update (1, 1)
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=D64)
    for simplified in (True, False):
        torch.testing.assert_close(config_direction(G, simplified=simplified), torch.tensor([1.0, 1.0], dtype=D64))
    # g1 = (1, 0), g2 = (-1, 1): equal-cosine direction d ⟂ bisector condition u1.d = u2.d
    # u2 = (-1, 1)/sqrt2 -> d ∝ (1, 1 + sqrt 2); cos with each task equal and positive
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=D64)
    for simplified in (True, False):
        d = config_direction(G, simplified=simplified)
        dh = d / d.norm()
        expected = torch.tensor([1.0, 1.0 + math.sqrt(2)], dtype=D64)
        torch.testing.assert_close(dh, expected / expected.norm())
        cos = (G / G.norm(dim=1, keepdim=True)) @ dh
        torch.testing.assert_close(cos[0], cos[1])
        assert bool((cos > 0).all())
        torch.testing.assert_close(d.norm(), (G @ dh).sum())


# ---- DualProj: torchjd aggregation/_dualproj.py + _utils/dual_cone.py + _linalg, transcribed -----
def _ref_dualproj_weights(matrix, norm_eps=0.0001, reg_eps=0.0001):
    gramian = torch.tensordot(matrix, matrix.T, dims=1)  # compute_gramian, contracted_dims=-1
    m = gramian.shape[0]
    u = torch.full([m], 1 / m, device=gramian.device, dtype=gramian.dtype)  # MeanWeighting
    squared_frobenius_norm = gramian.diagonal().sum()
    gramian = torch.where(squared_frobenius_norm < norm_eps, torch.zeros_like(gramian),
                          gramian / squared_frobenius_norm)
    gramian = gramian + reg_eps * torch.eye(m, dtype=gramian.dtype, device=gramian.device)
    G_ = gramian.cpu().detach().numpy().astype(np.float64)
    U_ = u.cpu().detach().numpy().astype(np.float64)
    W = np.apply_along_axis(lambda v: solve_qp(G_, np.zeros(m), -np.eye(m), -v, solver="quadprog"),
                            axis=-1, arr=U_)
    return torch.as_tensor(W, device=gramian.device, dtype=gramian.dtype)


@pytest.mark.parametrize("T", [2, 3, 6])
@pytest.mark.parametrize("seed", range(4))
def test_dualproj_equals_torchjd_bit_for_bit(T, seed):
    G = _conflicting(T, 30, seed)
    w_ref = _ref_dualproj_weights(G)
    agg = methods.create("dualproj", num_tasks=T).aggregate(G, torch.ones(T))
    assert agg.weights.dtype == G.dtype and torch.equal(agg.weights, w_ref)
    assert torch.equal(agg.weights @ G, w_ref @ G)


def test_dualproj_hand_cases():
    m = methods.create("dualproj", num_tasks=2)
    # no conflict: the mean is already in the dual cone, w = u = (1/2, 1/2) (to the 1e-4 regulariser)
    w = m.aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=D64), torch.ones(2)).weights
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=D64), atol=1e-4, rtol=0)
    # g1 = (1, 0), g2 = (-2, 1): mean (-1/2, 1/2) conflicts with g1; its projection onto
    # {d: g1.d >= 0} is (0, 1/2), which g2 accepts: d = 1 * g1 + 1/2 * g2
    G = torch.tensor([[1.0, 0.0], [-2.0, 1.0]], dtype=D64)
    w = m.aggregate(G, torch.ones(2)).weights
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5], dtype=D64), atol=2e-3, rtol=0)
    assert bool(((G @ (w @ G)) >= -1e-3).all())


# ---- UW-SO: the paper's formula, hand-computed ------------------------------------------------
A = torch.tensor([1.0, 2.0, 4.0])


def _loss_step(method, a=A):
    p = torch.nn.Parameter(torch.ones(3))
    info = method.backward(a * p, [p], [])
    return p.grad, info


@pytest.mark.parametrize("temperature, expected", [
    # L = (1, 2, 4): 1/L = (1, .5, .25); exp = (2.718282, 1.648721, 1.284025), sum 5.651029
    (1.0, [0.481024, 0.291756, 0.227220]),
    # 1/(L T) = (2, 1, .5): exp = (7.389056, 2.718282, 1.648721), sum 11.756059
    (0.5, [0.628532, 0.231224, 0.140244]),
])
def test_uw_so_hand_computed(temperature, expected):
    m = methods.create("uw_so", num_tasks=3, temperature=temperature)
    g, info = _loss_step(m)
    w = torch.tensor(expected)
    torch.testing.assert_close(info["weights"], w, atol=2e-6, rtol=0)
    torch.testing.assert_close(g, w * A, atol=1e-5, rtol=0)  # detached weights: dL/dp_t = w_t a_t
    assert math.isclose(float(info["weights"].sum()), 1.0, abs_tol=1e-6)


# ---- GO4Align: autumn9999/GO4Align methods/cluster_methods.py GO4ALIGN, transcribed -------------
class _RefGO4Align:
    def __init__(self, n_tasks, num_groups, robust_step_size=0.0001):
        self.n_tasks = n_tasks
        self.adv_probs = torch.ones(n_tasks) / n_tasks
        self.robust_step_size = robust_step_size
        self.num_groups = num_groups

    def get_weighted_loss(self, losses, init=None):
        adjusted_loss = losses.detach()
        scale = adjusted_loss.sum() / adjusted_loss
        self.adv_probs = self.adv_probs * torch.exp(- self.robust_step_size * adjusted_loss)
        self.adv_probs = self.adv_probs / (self.adv_probs.sum())
        weight = scale * self.adv_probs
        weight = weight.unsqueeze(1)
        if self.num_groups >= 2:
            cluster_ids_x, cluster_centers = _ref_kmeans(weight, self.num_groups, init)
            mask = torch.zeros(self.n_tasks, self.num_groups)
            cluster_ids = cluster_ids_x.unsqueeze(1)
            mask.scatter_(1, cluster_ids, 1)
            kmeans_weight = torch.mm(mask, cluster_centers).squeeze(1)
        elif self.num_groups == 1:
            kmeans_weight = torch.ones(self.n_tasks)
            kmeans_weight = kmeans_weight * torch.mean(weight)
        loss = torch.sum(losses * kmeans_weight)
        return loss, kmeans_weight


def _ref_kmeans(X, num_clusters, indices, tol=1e-4):
    """kmeans_pytorch.kmeans (euclidean), initial indices given instead of np.random.choice."""
    X = X.float()
    initial_state = X[indices]
    while True:
        A, B = X.unsqueeze(dim=1), initial_state.unsqueeze(dim=0)
        dis = ((A - B) ** 2.0).sum(dim=-1).squeeze()
        choice_cluster = torch.argmin(dis, dim=1)
        initial_state_pre = initial_state.clone()
        for index in range(num_clusters):
            selected = torch.nonzero(choice_cluster == index).squeeze()
            selected = torch.index_select(X, 0, selected)
            initial_state[index] = selected.mean(dim=0)
        center_shift = torch.sum(torch.sqrt(torch.sum((initial_state - initial_state_pre) ** 2, dim=1)))
        if center_shift ** 2 < tol:
            break
    return choice_cluster, initial_state


def test_go4align_equals_reference_over_steps_one_group():
    ref = _RefGO4Align(3, num_groups=1, robust_step_size=0.05)
    m = methods.create("go4align", num_tasks=3, robust_step_size=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        L = torch.rand(3, generator=g) * torch.tensor([0.1, 2.0, 50.0])
        _, w_ref = ref.get_weighted_loss(L)
        w = m.weights(L)
        assert torch.equal(w, w_ref) and torch.equal(m.adv_probs, ref.adv_probs)


@pytest.mark.parametrize("seed", range(3))
def test_go4align_equals_reference_with_kmeans_groups(seed):
    T, K = 6, 3
    ref = _RefGO4Align(T, num_groups=K, robust_step_size=0.01)
    m = methods.create("go4align", num_tasks=T, num_groups=K, robust_step_size=0.01)
    g = torch.Generator().manual_seed(seed)
    for step in range(5):
        L = torch.rand(T, generator=g) * torch.tensor([0.05, 0.1, 1.0, 2.0, 30.0, 60.0])
        torch.manual_seed(100 * seed + step)
        w = m.weights(L)
        torch.manual_seed(100 * seed + step)  # the same initial centres as the method drew
        _, w_ref = ref.get_weighted_loss(L, init=torch.randperm(T)[:K])
        assert torch.equal(w, w_ref)


def test_go4align_hand_computed():
    # L = (1, 2, 4), eta = 0.5: scale = 7 / L = (7, 3.5, 1.75); p ∝ exp(-L/2) = (.606531, .367879,
    # .135335) / 1.109745 = (.546549, .331498, .121951); v = scale * p = (3.825843, 1.160243, .213414)
    L = torch.tensor([1.0, 2.0, 4.0])
    m = methods.create("go4align", num_tasks=3, robust_step_size=0.5)
    w = m.weights(L)
    torch.testing.assert_close(m.adv_probs, torch.tensor([0.546549, 0.331498, 0.121951]), atol=2e-6, rtol=0)
    torch.testing.assert_close(w, torch.full((3,), (3.825843 + 1.160243 + 0.213414) / 3), atol=3e-6, rtol=0)
    # two groups: from any two distinct initial centres Lloyd ends at {3.826} and {1.160, .213}
    for seed in range(5):
        torch.manual_seed(seed)
        m = methods.create("go4align", num_tasks=3, num_groups=2, robust_step_size=0.5)
        w = m.weights(L)
        low = (1.160243 + 0.213414) / 2
        torch.testing.assert_close(w, torch.tensor([3.825843, low, low]), atol=5e-6, rtol=0)
    # the objective is sum_t w_t L_t with detached weights
    m = methods.create("go4align", num_tasks=3, robust_step_size=0.5)
    g, info = _loss_step(m)
    torch.testing.assert_close(g, info["weights"] * A)


def test_go4align_empty_cluster_keep_or_reference_nan():
    x = torch.tensor([[1.0], [1.0], [5.0]])  # two equal initial centres: the second stays empty
    _, keep = kmeans_1d(x, 2, torch.tensor([0, 1]))
    assert torch.isfinite(keep).all()
    _, nan = kmeans_1d(x, 2, torch.tensor([0, 1]), empty_cluster="nan")
    assert torch.isnan(nan).any()  # kmeans_pytorch: the mean of an empty selection


# ---- through backward on a tiny model -------------------------------------------------------
class Tiny(torch.nn.Module):
    def __init__(self, T=3):
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Linear(4, 6)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(6, 1) for _ in range(T))

    def losses(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, len(self.heads), generator=g)
        h = torch.tanh(self.enc(x))
        return torch.stack([((head(h).squeeze(1) - y[:, t]) ** 2).mean() * (10.0 ** t)
                            for t, head in enumerate(self.heads)])


def _jac(losses, params):
    rows = []
    for t in range(losses.shape[0]):
        gs = torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params)]))
    return torch.stack(rows)


@pytest.mark.parametrize("name", ["config", "dualproj"])
def test_gradient_methods_fill_reference_shared_and_plain_head_grads(name):
    model = Tiny()
    shared, heads = list(model.enc.parameters()), list(model.heads.parameters())
    L = model.losses()
    G = _jac(L, shared)
    expected = _ref_config_update(G) if name == "config" else _ref_dualproj_weights(G) @ G
    head_expected = torch.autograd.grad(L.sum(), heads, retain_graph=True)
    methods.create(name, num_tasks=3).backward(L, shared, heads)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected, rtol=1e-5, atol=1e-6)
    for p, e in zip(heads, head_expected):
        torch.testing.assert_close(p.grad, e)


@pytest.mark.parametrize("name", ["uw_so", "go4align"])
def test_loss_methods_backward_weighted_sum(name):
    model = Tiny()
    params = list(model.parameters())
    m = methods.create(name, num_tasks=3)
    L = model.losses()
    info = m.backward(L, list(model.enc.parameters()), list(model.heads.parameters()))
    got = [p.grad.clone() for p in params]
    expected = torch.autograd.grad((model.losses() * info["weights"]).sum(), params)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_yaml_defaults_build():
    from omegaconf import OmegaConf
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for name in ("config", "dualproj", "uw_so", "go4align"):
        cfg = OmegaConf.to_container(OmegaConf.load(root / "configs" / "method" / f"{name}.yaml"))
        assert cfg.pop("name") == name
        assert methods.create(name, num_tasks=3, **cfg).name == name


# ---- NTKMTL (n = 1): jianke0604/NTKMTL methods/weight_methods.py NTKMTL, transcribed -------------
def _ref_ntkmtl_backward(losses, shared_parameters, task_specific_parameters, n_tasks, ntk_exp=0.5, max_norm=1.0):
    grad_dims = [param.data.numel() for param in shared_parameters]
    grads = torch.Tensor(sum(grad_dims), n_tasks)
    for i in range(n_tasks):
        if i < n_tasks - 1:
            losses[i].backward(retain_graph=True)
        else:
            losses[i].backward()
        grads[:, i].fill_(0.0)
        for cnt, param in enumerate(shared_parameters):
            if param.grad is not None:
                beg = 0 if cnt == 0 else sum(grad_dims[:cnt])
                en = sum(grad_dims[: cnt + 1])
                grads[beg:en, i].copy_(param.grad.data.detach().clone().view(-1))
        for p in shared_parameters:
            p.grad = None
    GTG = grads.t().mm(grads)
    w_cpu = torch.pow(torch.trace(GTG) / GTG.diagonal(), ntk_exp)
    g = grads @ w_cpu
    newgrad = g * n_tasks
    for cnt, param in enumerate(shared_parameters):
        beg = 0 if cnt == 0 else sum(grad_dims[:cnt])
        en = sum(grad_dims[: cnt + 1])
        param.grad = newgrad[beg:en].contiguous().view(param.data.size()).data.clone()
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(shared_parameters, max_norm)
    return w_cpu


@pytest.mark.parametrize("max_norm", [1.0, 100.0, 0.0])
@pytest.mark.parametrize("seed", range(3))
def test_ntkmtl_equals_reference_bit_for_bit(seed, max_norm):
    model = Tiny()
    params = list(model.parameters())
    shared, heads = list(model.enc.parameters()), list(model.heads.parameters())
    _ref_ntkmtl_backward(model.losses(seed), shared, heads, 3, max_norm=max_norm)
    ref = [p.grad.clone() for p in params]
    model.zero_grad(set_to_none=True)
    info = methods.create("ntkmtl", num_tasks=3, max_norm=max_norm).backward(model.losses(seed), shared, heads)
    for a, b in zip([p.grad for p in params], ref):
        assert torch.equal(a, b)
    assert info["shared_grad_norm"] > 1.0 or max_norm != 1.0


def test_ntkmtl_hand_computed():
    # ‖g‖² = (1, 4): trace 5, w = sqrt(5 / (1, 4)) = (2.236068, 1.118034); update 2 (w1 g1 + w2 g2)
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D64)
    agg = methods.create("ntkmtl", num_tasks=2, max_norm=0.0).aggregate(G, torch.ones(2))
    torch.testing.assert_close(agg.direction, torch.tensor([2 * 2.236068, 2 * 2 * 1.118034], dtype=D64), atol=1e-6, rtol=0)
    # the weighted task gradients have equal norms: w_t ‖g_t‖ = sqrt(5) for both
    torch.testing.assert_close(agg.weights / 2 * G.norm(dim=1), torch.full((2,), math.sqrt(5), dtype=D64))
    # clipped to norm 1
    agg = methods.create("ntkmtl", num_tasks=2).aggregate(G, torch.ones(2))
    torch.testing.assert_close(agg.direction.norm(), torch.tensor(1.0, dtype=D64), atol=1e-5, rtol=0)


# ---- Auto-Lambda: lorenmt/auto-lambda auto_lambda.py + trainer_dense.py loop, transcribed ----------
class _Net(torch.nn.Module):
    """Shared MLP with BatchNorm and T heads; forward returns the list of predictions (as the
    reference's networks), `shared`/`heads` split the parameters for the suite's method."""

    def __init__(self, T=3):
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh())
        self.heads = torch.nn.ModuleList(torch.nn.Linear(6, 1) for _ in range(T))

    def forward(self, x):
        h = self.enc(x)
        return [head(h).squeeze(1) for head in self.heads]


def _batch(seed, T=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 4, generator=g), torch.randn(8, T, generator=g) * torch.tensor([1.0, 3.0, 0.3])[:T]


def _task_losses(pred, y):
    return [((p - y[:, t]) ** 2).mean() for t, p in enumerate(pred)]


class _RefAutoLambda:
    def __init__(self, model, train_tasks, weight_init=0.1):
        self.model = model
        self.model_ = copy.deepcopy(model)
        self.meta_weights = torch.tensor([weight_init] * train_tasks, requires_grad=True)
        self.n = train_tasks

    def virtual_step(self, train_x, train_y, alpha, model_optim):
        train_loss = _task_losses(self.model(train_x), train_y)
        loss = sum([w * train_loss[i] for i, w in enumerate(self.meta_weights)])
        gradients = torch.autograd.grad(loss, self.model.parameters())
        with torch.no_grad():
            for weight, weight_, grad in zip(self.model.parameters(), self.model_.parameters(), gradients):
                if 'momentum' in model_optim.param_groups[0].keys():
                    m = model_optim.state[weight].get('momentum_buffer', 0.) * model_optim.param_groups[0]['momentum']
                else:
                    m = 0
                weight_.copy_(weight - alpha * (m + grad + model_optim.param_groups[0]['weight_decay'] * weight))

    def unrolled_backward(self, train_x, train_y, val_x, val_y, alpha, model_optim):
        self.virtual_step(train_x, train_y, alpha, model_optim)
        pri_weights = [1.0] * self.n
        val_loss = _task_losses(self.model_(val_x), val_y)
        loss = sum([w * val_loss[i] for i, w in enumerate(pri_weights)])
        d_model = torch.autograd.grad(loss, tuple(self.model_.parameters()), allow_unused=True)
        hessian = self.compute_hessian(d_model, train_x, train_y)
        with torch.no_grad():
            for mw, h in zip([self.meta_weights], hessian):
                mw.grad = - alpha * h

    def compute_hessian(self, d_model, train_x, train_y):
        norm = torch.cat([w.view(-1) for w in d_model]).norm()
        eps = 0.01 / norm
        with torch.no_grad():
            for p, d in zip(self.model.parameters(), d_model):
                p += eps * d
        train_loss = _task_losses(self.model(train_x), train_y)
        loss = sum([w * train_loss[i] for i, w in enumerate(self.meta_weights)])
        d_weight_p = torch.autograd.grad(loss, self.meta_weights)
        with torch.no_grad():
            for p, d in zip(self.model.parameters(), d_model):
                p -= 2 * eps * d
        train_loss = _task_losses(self.model(train_x), train_y)
        loss = sum([w * train_loss[i] for i, w in enumerate(self.meta_weights)])
        d_weight_n = torch.autograd.grad(loss, self.meta_weights)
        with torch.no_grad():
            for p, d in zip(self.model.parameters(), d_model):
                p += eps * d
        return [(p - n) / (2. * eps) for p, n in zip(d_weight_p, d_weight_n)]


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4, momentum=0.9)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_auto_lambda_equals_reference_over_steps(optimizer):
    make_opt = _sgd if optimizer == "sgd" else (lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))
    ref_model, model = _Net(), _Net()
    ref_opt, opt = make_opt(ref_model), make_opt(model)
    ref = _RefAutoLambda(ref_model, 3)
    ref_meta_opt = torch.optim.Adam([ref.meta_weights], lr=1e-4)
    m = methods.create("auto_lambda", num_tasks=3)

    def loss_fn(net, batch):
        return torch.stack(_task_losses(net(batch[0]), batch[1]))

    for step in range(4):
        (x, y), (vx, vy) = _batch(step), _batch(100 + step)
        # reference trainer_dense.py: meta update, then the weighted training step
        ref_meta_opt.zero_grad()
        ref.unrolled_backward(x, y, vx, vy, ref_opt.param_groups[0]["lr"], ref_opt)
        ref_meta_opt.step()
        ref_opt.zero_grad()
        train_loss = _task_losses(ref_model(x), y)
        sum([w * train_loss[i] for i, w in enumerate(ref.meta_weights)]).backward()
        ref_opt.step()
        # the suite: the trainer's order (before_step, forward, backward, step)
        ctx = methods.StepContext(model=model, batch=(x, y), val_batch=(vx, vy), loss_fn=loss_fn, optimizer=opt)
        m.before_step(ctx)
        opt.zero_grad()
        info = m.backward(loss_fn(model, (x, y)), list(model.enc.parameters()), list(model.heads.parameters()), ctx=ctx)
        opt.step()
        assert torch.equal(m.meta_weights.detach(), ref.meta_weights.detach()), step
        assert torch.equal(info["weights"], ref.meta_weights.detach())
        for a, b in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(m.meta_weights.detach(), torch.full((3,), 0.1))  # the weights moved


def test_auto_lambda_first_meta_step_by_hand_direction():
    # Adam's first step moves each weight by -lr * sign(grad): 0.1 -/+ 1e-4 exactly in direction
    model, opt = _Net(), None
    opt = _sgd(model)
    m = methods.create("auto_lambda", num_tasks=3)
    (x, y), (vx, vy) = _batch(0), _batch(1)
    ctx = methods.StepContext(model=model, batch=(x, y), val_batch=(vx, vy), optimizer=opt,
                              loss_fn=lambda net, b: torch.stack(_task_losses(net(b[0]), b[1])))
    m.before_step(ctx)
    moved = m.meta_weights.detach() - 0.1
    torch.testing.assert_close(moved.abs(), torch.full((3,), 1e-4), rtol=1e-3, atol=0)
    assert m.meta_skipped == 0


# ---- NTKMTL-SR: the commented NTKMTL-SR block of jianke0604/NTKMTL weight_methods.py, transcribed ---
def _ref_ntkmtl_sr(losses, representation, n_tasks, ntk_exp=0.5, max_norm=1.0, shared_parameters=()):
    z_list = [representation for _ in range(n_tasks)]
    batch_size = losses.shape[0]
    lambda_ = np.array([0.0] * n_tasks)
    for i in range(n_tasks):
        lambda_[i] = 0.0
        J = []
        for j in range(batch_size):
            delta = torch.autograd.grad(losses[j][i], z_list[i], retain_graph=True)
            J.append(torch.cat([torch.flatten(grad) for grad in delta]))
        J = torch.stack(J)
        JJ = J.mm(J.t())
        lambda_[i] = torch.linalg.eigvalsh(JJ)[-1]
    lambda_sum = np.sum(lambda_)
    lambda_ = np.power(lambda_sum / lambda_, ntk_exp)
    loss = torch.mean(losses, 0)
    loss = torch.sum(loss * torch.tensor(lambda_))
    # base WeightMethod.backward: clip_grad_norm_ (on the cleared gradients), then loss.backward()
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(shared_parameters, max_norm)
    loss.backward()
    return lambda_


@pytest.mark.parametrize("B", [8, 10])  # 10: torch.chunk's last chunk is smaller
def test_ntkmtl_sr_equals_reference(B):
    from mtl.engine import Representation
    net = _Net()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(B, 4, generator=g), torch.randn(B, 3, generator=g)
    # reference (quantum_chemistry/trainer.py, NTKMTL-SR): per-sample MSE, 4 chunks, their means
    net.zero_grad()
    feats = net.enc(x)
    out = torch.stack([head(feats).squeeze(1) for head in net.heads], dim=1)
    per = torch.nn.functional.mse_loss(out, y, reduction="none")
    chunked = torch.stack([c.mean(dim=0) for c in torch.chunk(per, 4, dim=0)], dim=0)
    lam = _ref_ntkmtl_sr(chunked, feats, 3, shared_parameters=list(net.enc.parameters()))
    ref = [p.grad.clone() for p in net.parameters()]
    # the suite: heads on the split representation, the context holds the per-sample losses
    net.zero_grad()
    rep = Representation.split(net.enc(x))
    per = (torch.stack([head(rep.leaf).squeeze(1) for head in net.heads], dim=1) - y) ** 2
    m = methods.create("ntkmtl_sr", num_tasks=3)
    info = m.backward(per.mean(0), list(net.enc.parameters()), list(net.heads.parameters()), rep=rep,
                      ctx=methods.StepContext(sample_losses=per, features=rep))
    np.testing.assert_array_equal(info["weights"].numpy(), lam.astype(np.float32))
    for a, b in zip([p.grad for p in net.parameters()], ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_ntkmtl_sr_weights_by_hand():
    # one chunk per sample, z = (z1, z2), L_t = a_t z_t for two tasks and two samples: J_t rows are
    # a_t e_t, NTK_t = a_t^2 [[1, 1], [1, 1]] (both samples share z), largest eigenvalue 2 a_t^2
    z = torch.tensor([1.0, 1.0], requires_grad=True)
    a = torch.tensor([1.0, 3.0])
    L = torch.stack([a * z, a * z])  # [n = 2, T = 2]
    from mtl.methods.ntkmtl_sr import ntk_sr_weights
    w = ntk_sr_weights(L, z, 0.5)
    # lambda = (2, 18): (20 / lambda) ** 0.5 = (sqrt 10, sqrt(10/9))
    np.testing.assert_allclose(w, [math.sqrt(10), math.sqrt(10 / 9)], rtol=1e-12)


# ---- MOML: LibMTL trainer.py bacth_forward_MOML (+ TW, MGDA normaliser and solver), transcribed ----
def _ref_moml_step(model, tw, tw_optimizer, optimizer, inner, outer, task_num, inner_lr=0.1):
    import torch.nn.functional as F
    from tests.test_gradient_methods_a import _libmtl_min_norm

    def forward4loss(m, batch):
        return torch.stack(_task_losses(m(batch[0]), batch[1]))

    meta_model = copy.deepcopy(model)
    losses = forward4loss(meta_model, inner)
    g_f = []
    for tn in range(task_num):
        # allow_unused + zeros: the reference raises for parameters a task's loss does not reach
        g_f_tn = torch.autograd.grad(losses[tn], meta_model.parameters(), retain_graph=True, allow_unused=True)
        g_f.append(torch.cat([(torch.zeros_like(p) if g is None else g).view(-1)
                              for g, p in zip(g_f_tn, meta_model.parameters())]))
    g_f = torch.stack(g_f)
    beg = 0
    alpha = tw.data.clone()
    for p in meta_model.parameters():
        p_grad = (F.softmax(alpha, dim=-1) @ g_f[:, beg:beg + p.numel()]).view(p.size())
        p.data -= inner_lr * p_grad
        beg += p.numel()
    g_s = torch.autograd.functional.jacobian(lambda x: F.softmax(x, dim=-1), alpha)
    losses = forward4loss(meta_model, outer)
    alpha_grad = torch.zeros(task_num, len(alpha))
    for tn in range(task_num):
        g_F_tn = torch.autograd.grad(losses[tn], meta_model.parameters(), retain_graph=True, allow_unused=True)
        g_F_tn = torch.cat([(torch.zeros_like(p) if g is None else g).view(-1)
                            for g, p in zip(g_F_tn, meta_model.parameters())])
        alpha_grad[tn] = - inner_lr * g_F_tn @ g_f.t() @ g_s
    gn = alpha_grad.pow(2).sum(-1).sqrt()  # MGDA._gradient_normalizers(ntype='l2')
    alpha_grad = alpha_grad / gn.unsqueeze(1).repeat(1, alpha_grad.size()[1])
    sol = _libmtl_min_norm(alpha_grad)
    alpha_grad = sum([sol[tn] * alpha_grad[tn] for tn in range(task_num)])
    tw_optimizer.zero_grad()
    tw.grad = alpha_grad
    tw_optimizer.step()
    # update model (the reference draws a third batch here; the suite uses the inner batch)
    losses = forward4loss(model, inner)
    loss = torch.sum(torch.mul(F.softmax(tw, dim=-1), losses))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    tw_optimizer.zero_grad()


@pytest.mark.parametrize("T", [2, 3])
def test_moml_equals_libmtl_over_steps(T):
    ref_model, model = _Net(T), _Net(T)
    ref_opt, opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2), torch.optim.Adam(model.parameters(), lr=1e-2)
    tw = torch.nn.Parameter(torch.FloatTensor(T))
    torch.nn.init.constant_(tw, 1 / T)
    tw_opt = torch.optim.Adam([tw], lr=1e-3)
    m = methods.create("moml", num_tasks=T)

    def loss_fn(net, batch):
        return torch.stack(_task_losses(net(batch[0]), batch[1]))

    for step in range(4):
        inner, outer = _batch(step, T), _batch(50 + step, T)
        _ref_moml_step(ref_model, tw, tw_opt, ref_opt, inner, outer, T)
        ctx = methods.StepContext(model=model, batch=inner, val_batch=outer, loss_fn=loss_fn, optimizer=opt)
        m.before_step(ctx)
        opt.zero_grad()
        info = m.backward(loss_fn(model, inner), list(model.enc.parameters()), list(model.heads.parameters()), ctx=ctx)
        opt.step()
        assert torch.equal(m.alpha.detach(), tw.detach()), step
        torch.testing.assert_close(info["weights"], torch.softmax(tw.detach(), -1), rtol=0, atol=0)
        for a, b in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(m.alpha.detach(), torch.full((T,), 1 / T))


def test_moml_two_tasks_hand_direction():
    # two tasks: softmax's Jacobian is s1 s2 [[1, -1], [-1, 1]], so each row of the upper-level
    # Jacobian is a multiple of (1, -1); l2-normalised, each is ±(1, -1)/sqrt 2. Same signs: the
    # min-norm point is that row and Adam's first step moves alpha by ∓1e-3, opposite for the two
    # tasks; opposite signs: the min-norm point is 0 up to rounding, which Adam's first step
    # (g / (|g| + 1e-8)) turns into a move of at most 1e-3 (as in the reference)
    sizes = []
    for seed in range(6):
        model, m = _Net(2), methods.create("moml", num_tasks=2)
        ctx = methods.StepContext(model=model, batch=_batch(seed, 2), val_batch=_batch(10 + seed, 2), optimizer=None,
                                  loss_fn=lambda net, b: torch.stack(_task_losses(net(b[0]), b[1])))
        m.before_step(ctx)
        moved = (m.alpha.detach() - 0.5).double()
        assert float(moved.sum()) == pytest.approx(0.0, abs=1e-9)
        g = m.alpha.grad.abs()  # the combined row: ±(1, -1)/sqrt 2, or ~0
        assert torch.allclose(g, torch.full((2,), 2 ** -0.5), atol=1e-6) or float(g.max()) < 1e-6
        sizes.append(float(moved.abs().max()))
    assert max(sizes) <= 1e-3 * (1 + 1e-4) and any(s == pytest.approx(1e-3, rel=1e-4) for s in sizes)


# ---- FORUM: LibMTL trainer.py bacth_forward_FORUM (+ TW), transcribed ---------------------------
def _ref_forum_step(model, tw, tw_optimizer, optimizer, inner, outer, lambda_buffer, epoch, task_num,
                    phi=0.1, inner_step=5, inner_lr=0.1):
    import cvxpy as cp
    import torch.nn.functional as F

    def forward4loss(m, batch):
        return torch.stack(_task_losses(m(batch[0]), batch[1]))

    def tw_fn(loss):
        return torch.sum(torch.mul(F.softmax(tw, dim=-1), loss))

    grad_index = [param.data.numel() for param in model.parameters()]
    train_losses = forward4loss(model, inner)
    loss = tw_fn(train_losses)
    g_f = torch.autograd.grad(loss, [tw] + list(model.parameters()))
    g_f = torch.cat([g.view(-1) for g in g_f])
    inner_model = copy.deepcopy(model)
    inner_optim = torch.optim.SGD(inner_model.parameters(), lr=inner_lr, weight_decay=0)
    for i in range(inner_step):
        train_losses = forward4loss(inner_model, inner)
        loss = tw_fn(train_losses)
        if loss.item() > 1e+5:
            break
        inner_optim.zero_grad()
        loss.backward()
        inner_optim.step()
        tw_optimizer.zero_grad()
    train_losses = forward4loss(inner_model, inner)
    loss = tw_fn(train_losses)
    g_f_hat_alpha = torch.cat([g.view(-1) for g in torch.autograd.grad(loss, [tw])])
    g_q_beta = copy.deepcopy(g_f)
    g_q_beta[:task_num] = g_q_beta[:task_num] - g_f_hat_alpha
    train_losses = forward4loss(model, outer)
    g_F_omega_list = []
    for tn in range(task_num):
        # allow_unused + zeros: the reference raises for parameters a task's loss does not reach
        g = torch.autograd.grad(train_losses[tn], model.parameters(), retain_graph=True, allow_unused=True)
        g_F_omega_list.append(torch.cat([(torch.zeros_like(p) if x is None else x).view(-1)
                                         for x, p in zip(g, model.parameters())]))
    g_F_omega_list = torch.stack(g_F_omega_list)
    gn = g_F_omega_list.pow(2).sum(-1).sqrt()
    g_F_omega_list = g_F_omega_list / gn.unsqueeze(1).repeat(1, g_F_omega_list.size()[1])
    g_F_omega_list = torch.cat([torch.zeros(task_num, task_num), g_F_omega_list], dim=1)
    pi = []
    for tn in range(task_num):
        pi.append(phi - ((g_q_beta * g_F_omega_list[tn]).sum() / (g_q_beta.norm().pow(2) + 1e-8)).item())
    w_constant = phi * (g_q_beta.norm().pow(2) + 1e-8).item()
    A = torch.cat([g_F_omega_list, g_q_beta.unsqueeze(0)], dim=0)
    AAT = (A @ A.t()).detach().cpu().numpy()
    c, v = np.linalg.eig(AAT)
    gg_sqrt = v @ np.diag(np.sqrt(np.maximum(c, 0))) @ np.linalg.inv(v)
    g_cp = cp.Parameter(shape=(task_num + 1, task_num + 1), value=gg_sqrt)
    w_cp = cp.Variable(shape=(task_num + 1), nonneg=True)
    constraints = [cp.sum(w_cp[:-1]) == 1,
                   w_cp[-1] >= cp.sum([w_cp[tn] * pi[tn] for tn in range(task_num)]),
                   w_cp >= 0]
    prob = cp.Problem(cp.Minimize(cp.quad_over_lin(g_cp @ w_cp, 1) - w_cp[-1] * w_constant), constraints)
    prob.solve()
    w_cpu = w_cp.value
    for tn in range(task_num):
        lambda_buffer[tn] = lambda_buffer[tn] + (1 / (epoch + 1) ** (3 / 4)) * (w_cpu[tn] - lambda_buffer[tn])
    nu = max(sum([lambda_buffer[tn] * pi[tn] for tn in range(task_num)]), 0)
    g_final = sum([lambda_buffer[tn] * g_F_omega_list[tn] for tn in range(task_num)]) + nu * g_q_beta
    tw_optimizer.zero_grad()
    tw.grad = g_final[:task_num]
    optimizer.zero_grad()
    count = 0
    for param in model.parameters():
        beg = 0 if count == 0 else sum(grad_index[:count])
        end = sum(grad_index[:(count + 1)])
        param.grad = g_final[task_num:][beg:end].contiguous().view(param.data.size()).data.clone()
        count += 1
    tw_optimizer.step()
    optimizer.step()
    return lambda_buffer


def test_forum_equals_libmtl_over_steps():
    T = 3
    ref_model, model = _Net(T), _Net(T)
    ref_opt, opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2), torch.optim.Adam(model.parameters(), lr=1e-2)
    tw = torch.nn.Parameter(torch.FloatTensor(T))
    torch.nn.init.constant_(tw, 1 / T)
    tw_opt = torch.optim.Adam([tw], lr=1e-3)
    lambda_buffer = np.zeros([T])
    m = methods.create("forum", num_tasks=T)

    def loss_fn(net, batch):
        return torch.stack(_task_losses(net(batch[0]), batch[1]))

    for step in range(4):
        epoch = step // 2
        if step % 2 == 0:
            m.on_epoch_start(epoch)
        inner, outer = _batch(step, T), _batch(70 + step, T)
        lambda_buffer = _ref_forum_step(ref_model, tw, tw_opt, ref_opt, inner, outer, lambda_buffer, epoch, T)
        ctx = methods.StepContext(model=model, batch=inner, val_batch=outer, loss_fn=loss_fn, optimizer=opt)
        m.before_step(ctx)
        opt.zero_grad()
        info = m.backward(loss_fn(model, inner), list(model.enc.parameters()), list(model.heads.parameters()), ctx=ctx)
        opt.step()
        np.testing.assert_array_equal(m.lambda_buffer, lambda_buffer)
        assert torch.equal(m.alpha.detach(), tw.detach()), step
        np.testing.assert_array_equal(info["weights"].numpy(), lambda_buffer.astype(np.float32))
        for a, b in zip(model.parameters(), ref_model.parameters()):
            assert torch.equal(a, b), step
    assert (lambda_buffer > 0).any()


def test_forum_first_lambda_is_the_qp_solution_and_sums_to_one():
    # epoch 0: lambda = 0 + 1 * (w - 0) = w, whose first T entries sum to 1 (the QP's constraint)
    model, m = _Net(3), methods.create("forum", num_tasks=3)
    m.on_epoch_start(0)
    ctx = methods.StepContext(model=model, batch=_batch(0), val_batch=_batch(1), optimizer=None,
                              loss_fn=lambda net, b: torch.stack(_task_losses(net(b[0]), b[1])))
    m.before_step(ctx)
    assert (m.lambda_buffer >= -1e-6).all() and m.lambda_buffer.sum() == pytest.approx(1.0, abs=1e-5)
