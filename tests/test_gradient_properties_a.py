"""Property tests, one per promise, for the gradient-balancing methods (MGDA, PCGrad, CAGrad, IMTL-G, ...)."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from mtl import methods
from mtl.errors import InvalidCombination
from mtl.methods.aligned_mtl import aligned_mtl_matrix
from mtl.methods.cagrad import cagrad
from mtl.methods.imtl_g import imtl_g_weights
from mtl.methods.mgda import find_min_norm_element
from mtl.methods.pcgrad import pcgrad


def brute_force_min_norm(G: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Exact min of ‖wᵀG‖² over the simplex: every support set, KKT system on its affine hull."""
    G = G.double()
    M = G @ G.T
    T = M.shape[0]
    best_w, best = None, float("inf")
    for k in range(1, T + 1):
        for S in itertools.combinations(range(T), k):
            idx = list(S)
            K = torch.zeros(k + 1, k + 1, dtype=torch.float64)
            K[:k, :k] = 2 * M[idx][:, idx]
            K[:k, k] = 1
            K[k, :k] = 1
            rhs = torch.zeros(k + 1, dtype=torch.float64)
            rhs[k] = 1
            sol = torch.linalg.pinv(K) @ rhs
            if (sol[:k] < -1e-10).any() or abs(sol[:k].sum() - 1) > 1e-8:
                continue
            w = torch.zeros(T, dtype=torch.float64)
            w[idx] = sol[:k]
            val = float(w @ M @ w)
            if val < best - 1e-12:
                best_w, best = w, val
    return best_w, best


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


# ---- MGDA: min-norm point of the convex hull -------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_mgda_two_tasks_matches_grid(seed):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(2, 7, generator=g, dtype=torch.float64)
    res = find_min_norm_element(G @ G.T)
    gammas = torch.linspace(0, 1, 20001, dtype=torch.float64)
    grid = ((gammas[:, None] * G[0] + (1 - gammas[:, None]) * G[1]) ** 2).sum(1)
    best = grid.min().item()
    got = float(res.weights @ (G @ G.T) @ res.weights)
    assert got <= best + 1e-9 + 1e-3 * best  # 1e-3: LibMTL's 0.999 clamp at a vertex
    assert abs(res.weights[0].item() - gammas[grid.argmin()].item()) <= 1.1e-3


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("T", [2, 3])
def test_mgda_matches_brute_force(seed, T):
    g = torch.Generator().manual_seed(100 + seed)
    G = torch.randn(T, 5, generator=g, dtype=torch.float64)
    if seed % 2:  # make the tasks correlated so that supports vary
        G = G + 2.0 * torch.randn(1, 5, generator=g, dtype=torch.float64)
    w_bf, best = brute_force_min_norm(G)
    res = find_min_norm_element(G @ G.T)
    assert res.converged
    got = float(res.weights @ (G @ G.T) @ res.weights)
    assert got <= best * (1 + 2e-3) + 1e-9
    assert torch.allclose(res.weights, w_bf, atol=5e-3)
    assert abs(res.weights.sum().item() - 1) < 1e-9 and (res.weights >= 0).all()


# ---- PCGrad: no pairwise conflict left (T = 2 exactly) ---------------------------------------
@pytest.mark.parametrize("seed", range(10))
def test_pcgrad_two_tasks_leaves_no_conflict(seed):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(2, 6, generator=g, dtype=torch.float64)
    if G[0] @ G[1] > 0:
        G[1] = -G[1]  # force a conflict
    _, pc, n = pcgrad(G, generator=g)
    assert n >= 2
    assert pc[0] @ G[1] >= -1e-10 and pc[1] @ G[0] >= -1e-10
    assert abs(pc[0] @ G[1]) < 1e-10 and abs(pc[1] @ G[0]) < 1e-10  # projected onto the normal plane


# ---- IMTL-G: equal projections on the unit task gradients ------------------------------------
@pytest.mark.parametrize("T", [2, 3, 5])
def test_imtl_g_equal_projections(T):
    G = torch.randn(T, 12, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    alpha, singular = imtl_g_weights(G)
    d = alpha @ G
    proj = (G / G.norm(dim=1, keepdim=True)) @ d
    assert not singular and abs(alpha.sum().item() - 1) < 1e-10
    assert torch.allclose(proj, proj[0].expand(T), atol=1e-9)


# ---- Aligned-MTL: aligned gradients have equal singular values -------------------------------
@pytest.mark.parametrize("T,D,rank", [(2, 6, 2), (3, 8, 3), (4, 10, 2)])
def test_aligned_mtl_equal_singular_values(T, D, rank):
    g = torch.Generator().manual_seed(T * D)
    G = torch.randn(T, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, D, generator=g, dtype=torch.float64)
    B = aligned_mtl_matrix(G)
    s = torch.linalg.svdvals(B @ G)
    nonzero = s[s > 1e-6 * s.max()]
    assert len(nonzero) == rank
    assert torch.allclose(nonzero, nonzero[0].expand_as(nonzero), rtol=1e-6)
    lam_min = torch.linalg.eigvalsh(G @ G.T)[-rank]
    assert torch.allclose(nonzero[0], lam_min.sqrt(), rtol=1e-6)


# ---- GradNorm: weights stay normalised -------------------------------------------------------
def _tiny(T=2, seed=0):
    from mtl.models.base import HPS
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    model = HPS(enc, {f"t{t}": nn.Linear(3, 1) for t in range(T)})
    x = torch.randn(6, 4)
    ys = [torch.randn(6, 1) * (t + 1) for t in range(T)]

    def losses(rep_grad=False):
        preds, rep = model(x, rep_grad=rep_grad)
        return torch.stack([(preds[f"t{t}"] - ys[t]).pow(2).mean() for t in range(T)]), rep
    return model, losses


@pytest.mark.parametrize("rep_grad", [False, True])
def test_gradnorm_weights_sum_to_T(rep_grad):
    T = 3
    model, losses = _tiny(T)
    m = methods.create("gradnorm", num_tasks=T, rep_grad=rep_grad)
    opt = torch.optim.Adam(list(model.parameters()) + m.trainable_parameters(), lr=0.05)
    seen = []
    for epoch in range(3):
        m.on_epoch_start(epoch)
        for _ in range(4):
            opt.zero_grad()
            L, rep = losses(rep_grad)
            info = m.backward(L, model.shared_parameters(), model.task_parameters(), rep=rep)
            opt.step()
            seen.append(info["weights"])
        m.on_epoch_end(epoch)
    for w in seen:
        assert abs(w.sum().item() - T) < 1e-5 and (w > 0).all()
    assert not torch.allclose(seen[-1], torch.ones(T))  # the weights did move


# ---- scale invariance ------------------------------------------------------------------------
def test_imtl_g_direction_is_scale_invariant():
    g = torch.Generator().manual_seed(7)
    for T in (2, 3, 4):
        G = torch.randn(T, 9, generator=g, dtype=torch.float64)
        s = torch.tensor([0.05, 3.0, 20.0, 0.7][:T], dtype=torch.float64)
        d1 = imtl_g_weights(G)[0] @ G
        d2 = imtl_g_weights(s[:, None] * G)[0] @ (s[:, None] * G)
        assert cos(d1, d2) > 1 - 1e-9


def test_pcgrad_cagrad_mgda_are_not_scale_invariant():
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    Gs = torch.tensor([[1.0], [10.0]], dtype=torch.float64) * G
    orders = [[0, 1], [1, 0]]
    # PCGrad: (0.5, 1.5) vs (0.5, 10.5)
    assert cos(pcgrad(G, orders)[0], pcgrad(Gs, orders)[0]) < 0.99
    assert cos(cagrad(G, 0.5, 1)[0], cagrad(Gs, 0.5, 1)[0]) < 0.99

    def mgda_dir(X):
        return find_min_norm_element(X @ X.T).weights @ X
    H = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # (0.8, 0.4) vs (0.5, 0.5)
    Hs = torch.tensor([[1.0], [0.5]], dtype=torch.float64) * H
    assert torch.allclose(mgda_dir(H), torch.tensor([0.8, 0.4], dtype=torch.float64))
    assert cos(mgda_dir(H), mgda_dir(Hs)) < 0.99
    assert cos(mgda_dir(G), mgda_dir(Gs)) < 0.99


# ---- rep-grad variants run through the base's rep mode ---------------------------------------
REP = [("mgda_ub", {}), ("aligned_mtl_ub", {}), ("imtl_g", {"rep_grad": True}), ("imtl", {"rep_grad": True}),
       ("gradnorm", {"rep_grad": True}), ("mgda", {"rep_grad": True, "mgda_gn": "l2"}),
       ("aligned_mtl", {"rep_grad": True}), ("graddrop", {})]


@pytest.mark.parametrize("name,kw", REP)
def test_rep_grad_variants_fill_encoder_grads(name, kw):
    T = 3
    model, losses = _tiny(T)
    m = methods.create(name, num_tasks=T, **kw)
    assert m.rep_grad
    if name == "gradnorm":  # skip the EW epoch
        m.on_epoch_start(0)
        L, rep = losses(rep_grad=True)
        m.backward(L, model.shared_parameters(), model.task_parameters(), rep=rep)
        m.on_epoch_end(0)
        m.on_epoch_start(1)
    model.zero_grad()
    L, rep = losses(rep_grad=True)
    assert rep is not None
    info = m.backward(L, model.shared_parameters(), model.task_parameters(), rep=rep)
    enc = [p.grad.clone() for p in model.shared_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in enc)
    assert any(bool(g.abs().sum() > 0) for g in enc)
    if name == "graddrop":
        return
    # the encoder received the gradient of sum_t w_t L_t (L_t scaled by IMTL-L for imtl)
    w = info["weights"]
    model.zero_grad()
    L, _ = losses()
    if name == "imtl":
        L = torch.exp(m.loss_scale.detach()) * L - m.loss_scale.detach()
    (w.detach() * L).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(enc, model.shared_parameters()))


def test_rep_grad_needs_representation():
    model, losses = _tiny()
    m = methods.create("mgda_ub", num_tasks=2)
    with pytest.raises(InvalidCombination):
        m.backward(losses()[0], model.shared_parameters(), model.task_parameters())


# ---- methods forbidding rep-grad -------------------------------------------------------------
@pytest.mark.parametrize("name", ["pcgrad", "gradvac", "cagrad", "moco", "mtadam", "metabalance"])
def test_rep_grad_forbidden(name):
    with pytest.raises(InvalidCombination, match="rep_grad"):
        methods.create(name, num_tasks=2, rep_grad=True)
    methods.create(name, num_tasks=2, rep_grad=False)


def test_graddrop_requires_rep_grad():
    with pytest.raises(InvalidCombination, match="rep_grad"):
        methods.create("graddrop", num_tasks=2, rep_grad=False)
