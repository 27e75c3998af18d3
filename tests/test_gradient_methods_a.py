"""Value tests (hand-computed numbers) for the gradient-balancing methods:
MGDA, GradNorm, PCGrad, GradDrop, GradVac, IMTL-G, IMTL, CAGrad, MoCo, Aligned-MTL, MTAdam,
MetaBalance."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl import methods
from mtl.errors import SolverError
from mtl.methods.aligned_mtl import aligned_mtl_weights
from mtl.methods.cagrad import cagrad
from mtl.methods.graddrop import graddrop_combine
from mtl.methods.gradnorm import gradnorm_loss, gradnorm_weights
from mtl.methods.gradvac import group_sizes, gradvac, layer_sizes
from mtl.methods.imtl_g import imtl_g_weights
from mtl.methods.metabalance import metabalance_step
from mtl.methods.mgda import find_min_norm_element
from mtl.methods.moco import moco_step
from mtl.methods.mtadam import mtadam_step
from mtl.methods.pcgrad import pcgrad

T2 = torch.tensor
ROOT = Path(__file__).resolve().parents[1]


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


# ---- MGDA ------------------------------------------------------------------------------------
def test_mgda_two_tasks_closed_form():
    G = T2([[1.0, 0.0], [0.0, 2.0]])  # gram diag(1, 4): gamma = 4/5
    res = find_min_norm_element(G @ G.T)
    assert res.converged and close(res.weights, [0.8, 0.2])
    agg = methods.create("mgda", num_tasks=2).aggregate(G, T2([1.0, 1.0]))
    assert close(agg.weights, [0.8, 0.2]) and close(agg.weights @ G, [0.8, 0.4])


def test_mgda_l2_normalisation_uses_normalised_gradients():
    G = T2([[1.0, 0.0], [0.0, 2.0]])
    agg = methods.create("mgda", num_tasks=2, mgda_gn="l2").aggregate(G, T2([1.0, 1.0]))
    assert close(agg.info["min_norm_weights"], [0.5, 0.5])
    assert close(agg.weights, [0.5, 0.25]) and close(agg.weights @ G, [0.5, 0.5])
    # loss normaliser: g / L -> [[0.5, 0], [0, 0.5]] -> sol (0.5, 0.5), weights sol / L
    agg = methods.create("mgda", num_tasks=2, mgda_gn="loss").aggregate(G, T2([2.0, 4.0]))
    assert close(agg.weights, [0.25, 0.125])


def test_mgda_dominated_gradient_keeps_libmtl_clamp():
    G = T2([[1.0, 0.0], [2.0, 0.0]])  # v12 = 2 >= v11 = 1: the reference returns 0.999 / 0.001
    assert close(find_min_norm_element(G @ G.T).weights, [0.999, 0.001])


def test_mgda_non_convergence_is_counted_or_raised():
    torch.manual_seed(3)
    G = torch.randn(4, 6)
    m = methods.create("mgda", num_tasks=4, max_iter=1)
    agg = m.aggregate(G, torch.ones(4))
    assert agg.info["solver_failures"] == 1 and m.solver_failures_total == 1
    assert close(agg.weights.sum(), 1.0)  # still a convex combination
    with pytest.raises(SolverError, match="did not converge"):
        methods.create("mgda", num_tasks=4, max_iter=1, on_solver_error="raise").aggregate(G, torch.ones(4))
    assert methods.create("mgda", num_tasks=4).aggregate(G, torch.ones(4)).info["solver_failures"] == 0


# ---- GradNorm --------------------------------------------------------------------------------
def test_gradnorm_loss_value_and_param_gradient():
    p = torch.zeros(2, requires_grad=True)
    w = gradnorm_weights(p)
    assert close(w, [1.0, 1.0])
    G = T2([[1.0, 0.0], [0.0, 2.0]])  # ‖w g‖ = (1, 2), mean 1.5
    ratio = T2([1.0, 2.0])  # L/L0 -> r = (2/3, 4/3); target 1.5 r^1.5 = (0.816497, 2.309401)
    loss = gradnorm_loss(w, G, ratio, 1.5)
    assert abs(loss.item() - (1 - 0.816497 + 2.309401 - 2)) < 1e-5
    loss.backward()
    # dL/dw = (+1, -2); dw/dp = 2 (diag(s) - s s^T) with s = (.5, .5)
    assert close(p.grad, [1.5, -1.5])


def _tiny(T=2, seed=0):
    from mtl.models.base import HPS
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    model = HPS(enc, {f"t{t}": nn.Linear(3, 1) for t in range(T)})
    x = torch.randn(5, 4)
    ys = [torch.randn(5, 1) for _ in range(T)]

    def losses(rep_grad=False):
        preds, rep = model(x, rep_grad=rep_grad)
        return torch.stack([(preds[f"t{t}"] - ys[t]).pow(2).mean() for t in range(T)]), rep
    return model, losses


def test_gradnorm_epoch0_is_ew_then_initial_losses_are_epoch_mean():
    model, losses = _tiny()
    m = methods.create("gradnorm", num_tasks=2)
    m.on_epoch_start(0)
    L, _ = losses()
    m.backward(L, model.shared_parameters(), model.task_parameters())
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    losses()[0].sum().backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(got, model.parameters()))
    m.on_epoch_end(0)
    assert close(m.initial_losses, L.detach())
    m.on_epoch_start(1)
    model.zero_grad()
    info = m.backward(losses()[0], model.shared_parameters(), model.task_parameters())
    assert close(info["weights"], [1.0, 1.0]) and m.loss_scale.grad is not None


# ---- PCGrad ----------------------------------------------------------------------------------
def test_pcgrad_hand_case():
    G = T2([[1.0, 0.0], [-1.0, 1.0]])
    d, pc, n = pcgrad(G, orders=[[0, 1], [1, 0]])
    assert close(pc, [[0.5, 0.5], [0.0, 1.0]]) and close(d, [0.5, 1.5]) and n == 2
    # projection is against the ORIGINAL g_j: task 0 against two conflicting tasks
    G3 = T2([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    _, pc3, _ = pcgrad(G3, orders=[[1, 2, 0], [1, 2, 0], [0, 1, 2]])
    # pc0 = (1,0,0) + 0.5(-1,1,0) = (.5,.5,0); pc0·g2 = -0.5 -> + 0.25(-1,0,1) = (.25,.5,.25)
    assert close(pc3[0], [0.25, 0.5, 0.25])


# ---- GradDrop --------------------------------------------------------------------------------
def test_graddrop_hand_case():
    per = T2([[[1.0, -1.0]], [[1.0, 2.0]]])  # [T=2, B=1, F=2]
    x = T2([[1.0, -1.0]])
    # s = (1, 1), (1, -2); P = (1, 1/3); U = 0.5: feature 0 keeps positives, feature 1 negatives
    combined, M = graddrop_combine(per, x, 0.0, u=T2([0.5, 0.5]))
    assert close(M, [[1.0, 0.0], [1.0, 1.0]]) and close(combined, [[2.0, 2.0]])
    combined, _ = graddrop_combine(per, x, 0.5, u=T2([0.5, 0.5]))
    assert close(combined, [[2.0, 1.5]])


def test_graddrop_fills_encoder_with_masked_rep_gradient():
    model, losses = _tiny()
    m = methods.create("graddrop", num_tasks=2)
    L, rep = losses(rep_grad=True)
    torch.manual_seed(0)
    m.backward(L, model.shared_parameters(), model.task_parameters(), rep=rep)
    enc_grads = [p.grad.clone() for p in model.shared_parameters()]
    # recompute the expected value with the same U
    model.zero_grad()
    L, rep = losses(rep_grad=True)
    per = torch.stack([torch.autograd.grad(L[t], rep.leaf, retain_graph=True)[0] for t in range(2)])
    torch.manual_seed(0)
    combined, _ = graddrop_combine(per, rep.value.detach(), 0.0)
    rep.value.backward(combined)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(enc_grads, model.shared_parameters()))
    assert any(bool(g.abs().sum() > 0) for g in enc_grads)


# ---- GradVac ---------------------------------------------------------------------------------
def test_gradvac_first_step_is_pcgrad_and_updates_rho():
    G = T2([[1.0, 0.0], [-1.0, 1.0]])
    rho = torch.zeros(2, 2, 1)
    d, rho, n = gradvac(G, rho, [2], 0.5, orders=[[1], [0]])
    assert close(d, [0.5, 1.5], 1e-6) and n == 2
    # rho_ij <- 0.5 * 0 + 0.5 * cos = -0.5/sqrt(2)
    assert close(rho[0, 1, 0], -0.5 / math.sqrt(2)) and close(rho[1, 0, 0], -0.5 / math.sqrt(2))
    assert rho[0, 0, 0] == 0


def test_gradvac_per_tensor_groups():
    G = T2([[1.0, 0.0], [-1.0, 1.0]])
    d, rho, n = gradvac(G, torch.zeros(2, 2, 2), [1, 1], 0.5, orders=[[1], [0]])
    # group 0 conflicts (cos -1) and is removed for both tasks; group 1 has cos 0 (no change)
    assert close(d, [0.0, 1.0], 1e-6) and n == 2
    assert close(rho[:, :, 1], torch.zeros(2, 2))
    shapes = [torch.Size([2, 3]), torch.Size([3]), torch.Size([4, 2]), torch.Size([4])]
    assert group_sizes(shapes, 0) == [21] and group_sizes(shapes, 2) == [6, 3, 8, 4]
    assert group_sizes(shapes, 1) == [9, 12]
    enc = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.BatchNorm1d(2), nn.Linear(2, 4))
    assert layer_sizes(enc) == [8, 4, 12]


# ---- IMTL-G / IMTL ---------------------------------------------------------------------------
def test_imtl_g_hand_case():
    G = T2([[1.0, 0.0], [0.0, 2.0]])  # D = (1,-2), U = (1,-1): alpha_2 = 1/3
    alpha, singular = imtl_g_weights(G)
    assert not singular and close(alpha, [2 / 3, 1 / 3]) and close(alpha @ G, [2 / 3, 2 / 3])


def test_imtl_g_singular_case_uses_pinv_and_counts():
    G = T2([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # tasks 0 and 1 parallel
    m = methods.create("imtl_g", num_tasks=3)
    agg = m.aggregate(G, torch.ones(3))
    assert agg.info["solver_failures"] == 1 and torch.isfinite(agg.weights).all()


def test_imtl_scales_losses_and_trains_scale():
    model, losses = _tiny()
    m = methods.create("imtl", num_tasks=2)
    with torch.no_grad():
        m.loss_scale.copy_(T2([0.5, -0.25]))
    L, _ = losses()
    info = m.backward(L, model.shared_parameters(), model.task_parameters())
    s = T2([0.5, -0.25])
    assert close(m.loss_scale.grad, torch.exp(s) * L.detach() - 1)  # d/ds (e^s L - s)
    assert set(info) >= {"weights", "loss_scale", "grad_norms"}


def test_imtl_head_grads_are_plain_scaled_gradients():
    model, losses = _tiny()
    m = methods.create("imtl", num_tasks=2)
    with torch.no_grad():
        m.loss_scale.copy_(T2([0.5, -0.25]))
    m.backward(losses()[0], model.shared_parameters(), model.task_parameters())
    got = [p.grad.clone() for p in model.task_parameters()]
    model.zero_grad()
    L, _ = losses()
    (torch.exp(T2([0.5, -0.25])) * L).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(got, model.task_parameters()))


# ---- CAGrad ----------------------------------------------------------------------------------
def test_cagrad_orthogonal_unit_gradients():
    G = T2([[1.0, 0.0], [0.0, 1.0]])
    # g0 = sqrt(0.5); c = 0.5 g0; w = (.5,.5); lambda = c/‖gw‖ = 0.5; g = (.75,.75)
    d, w = cagrad(G, 0.5, 1)
    assert close(w, [0.5, 0.5], 1e-4) and close(d, [0.6, 0.6], 1e-4)
    assert close(cagrad(G, 0.5, 0)[0], [0.75, 0.75], 1e-4)
    assert close(cagrad(G, 0.5, 2)[0], [0.5, 0.5], 1e-4)


def test_cagrad_solver_failure_raises(monkeypatch):
    import mtl.methods.cagrad as mod

    class Fail:
        success, message, x = False, "Iteration limit reached", None

    monkeypatch.setattr(mod, "minimize", lambda *a, **k: Fail())
    with pytest.raises(SolverError, match="Iteration limit reached"):
        methods.create("cagrad", num_tasks=2).aggregate(T2([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2))


# ---- MoCo ------------------------------------------------------------------------------------
def test_moco_first_step():
    G = T2([[2.0, 0.0], [0.0, 1.0]])
    y, lam, d = moco_step(torch.zeros(2, 2), torch.full((2,), 0.5), G, T2([1.0, 2.0]), 1,
                          0.5, 0.5, 0.1, 0.5, 0.0)
    # ĝ = diag(1, 2); y = 0.5 ĝ; λ = softmax(0.5 - 0.1 diag(.25, 1) 0.5) = softmax(.4875, .45)
    assert close(y, [[0.5, 0.0], [0.0, 1.0]], 1e-6)
    assert close(lam, [0.509374, 0.490626]) and close(d, [0.254687, 0.490626])
    m = methods.create("moco", num_tasks=2)
    agg = m.aggregate(G * (1 + 1e-8), T2([1.0, 2.0]))
    assert close(agg.direction, [0.254687, 0.490626]) and m.moco_step == 1


# ---- Aligned-MTL -----------------------------------------------------------------------------
def test_aligned_mtl_diagonal_case():
    G = T2([[1.0, 0.0], [0.0, 2.0]])  # λ = (4, 1): B = 1 * diag(1/1, 1/2)
    w = aligned_mtl_weights(G)
    assert close(w, [1.0, 0.5]) and close(w @ G, [1.0, 1.0])
    assert close(aligned_mtl_weights(torch.zeros(2, 3)), [0.0, 0.0])


# ---- MTAdam ----------------------------------------------------------------------------------
def test_mtadam_first_step_balances_to_anchor():
    G = T2([[1.0, 1.0], [3.0, 0.0]])
    state: dict = {}
    d = mtadam_step(G, [2], state)
    # g2 -> sqrt2/3 * g2 = (sqrt2, 0); m̂ = g, denom = |g|: max = (sqrt2, 1)
    assert close(d, [1 / math.sqrt(2) + 1, 1.0]) and state["step"] == 1
    # per-tensor norms: segment 1 of task 2 has norm 0 and is left as is
    d = mtadam_step(G, [1, 1], {})
    assert close(d, [2.0, 1.0])


def test_mtadam_second_step_moments():
    G = T2([[1.0, 0.0], [0.0, 4.0]])
    state: dict = {}
    mtadam_step(G, [2], state)
    d = mtadam_step(G, [2], state)  # same grads: norms stay (1, 4), g' = (1,0),(0,1); m̂ = g', v̂ = g'^2
    assert close(d, [1.0, 1.0]) and close(state["norms"], [[1.0], [4.0]])
    assert close(state["m"], [[0.19, 0.0], [0.0, 0.19]])


# ---- MetaBalance -----------------------------------------------------------------------------
def test_metabalance_hand_case():
    G = T2([[1.0, 0.0], [0.0, 3.0]])
    d, n = metabalance_step(G, [2], None, 0.9, 0.7, "first")
    # n = (0.1, 0.3); g2 -> 0.7 (1/3) g2 + 0.3 g2 = (0, 1.6)
    assert close(n, [[0.1], [0.3]]) and close(d, [1.0, 1.6])
    d, n = metabalance_step(G, [2], n, 0.9, 0.7, "first")
    assert close(n, [[0.19], [0.57]]) and close(d, [1.0, 1.6])
    d, _ = metabalance_step(G, [2], None, 0.9, 0.7, "max")  # g1 -> 0.7*3 g1 + 0.3 g1
    assert close(d, [2.4, 3.0])


# ---- every method through a tiny model in param-grad mode ------------------------------------
PARAM_METHODS = ["mgda", "gradnorm", "pcgrad", "gradvac", "imtl_g", "imtl", "cagrad", "moco",
                 "aligned_mtl", "mtadam", "metabalance"]


@pytest.mark.parametrize("name", PARAM_METHODS)
def test_param_mode_fills_shared_and_plain_head_grads(name):
    model, losses = _tiny(T=3)
    m = methods.create(name, num_tasks=3)
    for epoch in range(2):  # GradNorm's second epoch is the GradNorm branch
        m.on_epoch_start(epoch)
        model.zero_grad()
        info = m.backward(losses()[0], model.shared_parameters(), model.task_parameters())
        m.on_epoch_end(epoch)
    shared = [p.grad.clone() for p in model.shared_parameters()]
    heads = [p.grad.clone() for p in model.task_parameters()]
    assert all(torch.isfinite(g).all() for g in shared) and any(bool(g.abs().sum() > 0) for g in shared)
    assert "grad_norms" in info
    model.zero_grad()
    L = losses()[0]
    if name == "imtl":
        L = torch.exp(m.loss_scale.detach()) * L
    L.sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(heads, model.task_parameters()))


def test_method_yaml_configs_instantiate():
    from omegaconf import OmegaConf
    for name in PARAM_METHODS + ["mgda_ub", "aligned_mtl_ub", "graddrop"]:
        cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "method" / f"{name}.yaml"))
        assert cfg.pop("name") == name
        m = methods.create(name, num_tasks=2, **cfg)
        assert m.name == name


def test_gradvac_rho_placement_pre_and_post_libmtl_fix():
    G = T2([[1.0, 0.0], [1.0, 1.0]])  # cos > 0 = rho: no adjustment
    d, rho, n = gradvac(G, torch.zeros(2, 2, 1), [2], 0.5, orders=[[1], [0]], ema_update="conflicting")
    assert n == 0 and close(d, [2.0, 1.0]) and close(rho, torch.zeros(2, 2, 1))  # LibMTL before d2d84fa
    d, rho, n = gradvac(G, torch.zeros(2, 2, 1), [2], 0.5, orders=[[1], [0]])
    cos = 1 / math.sqrt(2)  # default: every pair's EMA moves (paper, LibMTL since d2d84fa)
    assert n == 0 and close(d, [2.0, 1.0]) and close(rho[0, 1, 0], 0.5 * cos) and close(rho[1, 0, 0], 0.5 * cos)


def _libmtl_gradvac(grads, rho_T, k_idx, beta, orders, fixed):
    """LibMTL weighting/GradVac.py backward loop, transcribed (random.shuffle replaced by `orders`);
    fixed=False puts the EMA update inside the `if` as before commit d2d84fa."""
    task_num = grads.shape[0]
    pc_grads = grads.clone()
    for tn_i in range(task_num):
        for tn_j in orders[tn_i]:
            for k in range(len(k_idx)):
                beg, end = sum(k_idx[:k]), sum(k_idx[:k + 1])
                rho_ijk = torch.dot(pc_grads[tn_i, beg:end], grads[tn_j, beg:end]) / (
                    pc_grads[tn_i, beg:end].norm() * grads[tn_j, beg:end].norm() + 1e-8)
                if rho_ijk < rho_T[tn_i, tn_j, k]:
                    w = pc_grads[tn_i, beg:end].norm() * (rho_T[tn_i, tn_j, k] * (1 - rho_ijk ** 2).sqrt() - rho_ijk * (
                        1 - rho_T[tn_i, tn_j, k] ** 2).sqrt()) / (grads[tn_j, beg:end].norm() * (
                            1 - rho_T[tn_i, tn_j, k] ** 2).sqrt() + 1e-8)
                    pc_grads[tn_i, beg:end] += grads[tn_j, beg:end] * w
                    if not fixed:
                        rho_T[tn_i, tn_j, k] = (1 - beta) * rho_T[tn_i, tn_j, k] + beta * rho_ijk
                if fixed:
                    rho_T[tn_i, tn_j, k] = (1 - beta) * rho_T[tn_i, tn_j, k] + beta * rho_ijk
    return pc_grads.sum(0), rho_T


@pytest.mark.parametrize("ema_update,fixed", [("all", True), ("conflicting", False)])
def test_gradvac_matches_libmtl_over_steps(ema_update, fixed):
    g = torch.Generator().manual_seed(0)
    sizes = [3, 5, 4]
    rho, rho_ref = torch.zeros(3, 3, 3, dtype=torch.float64), torch.zeros(3, 3, 3, dtype=torch.float64)
    for step in range(6):
        G = torch.randn(3, 12, generator=g, dtype=torch.float64)
        G[1] -= 0.8 * G[0]  # conflicts
        orders = [[2, 1], [0, 2], [1, 0]] if step % 2 else [[1, 2], [2, 0], [0, 1]]
        d, rho, _ = gradvac(G, rho, sizes, 0.3, orders=orders, ema_update=ema_update)
        d_ref, rho_ref = _libmtl_gradvac(G, rho_ref, sizes, 0.3, orders, fixed)
        assert torch.allclose(d, d_ref, atol=1e-10) and torch.allclose(rho, rho_ref, atol=1e-12)


def test_gradnorm_epoch0_rep_mode_trains_encoder_like_ew():
    model, losses = _tiny()
    m = methods.create("gradnorm", num_tasks=2, rep_grad=True)
    m.on_epoch_start(0)
    L, rep = losses(rep_grad=True)
    m.backward(L, model.shared_parameters(), model.task_parameters(), rep=rep)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    losses()[0].sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(got, model.parameters()))


RUNNER_METHODS = PARAM_METHODS + ["mgda_ub", "aligned_mtl_ub", "graddrop"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNER_METHODS)
def test_runner_trains_two_epochs(train, name):
    import json
    path = train(["benchmark=synthetic", "trainer.epochs=2", "trainer.max_steps_per_epoch=3",
                  "benchmark.build.n_train=256", f"method={name}"])
    summary = json.loads((path / "summary.json").read_text())
    assert summary["steps"] == 6 and math.isfinite(summary["delta_p"])


# ---- head gradients of IMTL-G and MGDA: LibMTL (plain) vs nash-mtl (weighted backward) -----------
@pytest.mark.parametrize("name,scale", [("imtl_g", 1), ("mgda", 3), ("mgda_ub", 3)])
def test_head_grads_plain_or_weighted_as_nashmtl(name, scale):
    model, losses = _tiny(T=3, seed=2)
    heads = model.task_parameters()
    got = {}
    for mode in ("plain", "weighted"):
        m = methods.create(name, num_tasks=3, head_grads=mode)
        model.zero_grad()
        L, rep = losses(rep_grad=m.rep_grad)
        info = m.backward(L, model.shared_parameters(), heads, rep=rep)
        got[mode] = [p.grad.clone() for p in heads]
        # nash-mtl: weighted_loss = sum_t alpha_t L_t (MGDA: alpha = sol * n_tasks); loss.backward()
        alpha = info.get("min_norm_weights", info["weights"]) * scale
        model.zero_grad()
        L, _ = losses()
        expected = torch.autograd.grad((L * alpha).sum() if mode == "weighted" else L.sum(), heads)
        assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(got[mode], expected)), mode
    assert not torch.allclose(got["plain"][0], got["weighted"][0])
    with pytest.raises(ValueError, match="head_grads"):
        methods.create(name, num_tasks=3, head_grads="both")


def _libmtl_min_norm(grads):
    """LibMTL weighting/MGDA.py `_find_min_norm_element`, transcribed (runs in the gradients' dtype)."""
    def from2(v1v1, v1v2, v2v2):
        if v1v2 >= v1v1:
            return 0.999, v1v1
        if v1v2 >= v2v2:
            return 0.001, v2v2
        gamma = -1.0 * ((v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2))
        return gamma, v2v2 + gamma * (v1v2 - v2v2)

    def projection2simplex(y):
        m = len(y)
        sorted_y = torch.sort(y, descending=True)[0]
        tmpsum = 0.0
        tmax_f = (torch.sum(y) - 1.0) / m
        for i in range(m - 1):
            tmpsum += sorted_y[i]
            tmax = (tmpsum - 1) / (i + 1.0)
            if tmax > sorted_y[i + 1]:
                tmax_f = tmax
                break
        return torch.max(y - tmax_f, torch.zeros(m))

    def next_point(cur_val, grad, n):
        proj_grad = grad - (torch.sum(grad) / n)
        tm1 = -1.0 * cur_val[proj_grad < 0] / proj_grad[proj_grad < 0]
        tm2 = (1.0 - cur_val[proj_grad > 0]) / (proj_grad[proj_grad > 0])
        t = torch.ones(1)
        if (tm1 > 1e-7).sum() > 0:
            t = torch.min(tm1[tm1 > 1e-7])
        if (tm2 > 1e-7).sum() > 0:
            t = torch.min(t, torch.min(tm2[tm2 > 1e-7]))
        return projection2simplex(proj_grad * t + cur_val)

    grad_mat = grads.mm(grads.t())
    n = grads.size()[0]
    dmin = 1e8
    for i in range(n):
        for j in range(i + 1, n):
            c, d = from2(grad_mat[i, i], grad_mat[i, j], grad_mat[j, j])
            if d < dmin:
                dmin = d
                init_sol = [(i, j), c, d]
    sol_vec = torch.zeros(n)
    sol_vec[init_sol[0][0]] = init_sol[1]
    sol_vec[init_sol[0][1]] = 1 - init_sol[1]
    for _ in range(250):
        grad_dir = -1.0 * torch.matmul(grad_mat, sol_vec)
        new_point = next_point(sol_vec, grad_dir, n)
        v1v1 = torch.sum(sol_vec.unsqueeze(1).repeat(1, n) * sol_vec.unsqueeze(0).repeat(n, 1) * grad_mat)
        v1v2 = torch.sum(sol_vec.unsqueeze(1).repeat(1, n) * new_point.unsqueeze(0).repeat(n, 1) * grad_mat)
        v2v2 = torch.sum(new_point.unsqueeze(1).repeat(1, n) * new_point.unsqueeze(0).repeat(n, 1) * grad_mat)
        nc, nd = from2(v1v1, v1v2, v2v2)
        new_sol_vec = nc * sol_vec + (1 - nc) * new_point
        if torch.sum(torch.abs(new_sol_vec - sol_vec)) < 1e-5:
            return sol_vec
        sol_vec = new_sol_vec
    return sol_vec


@pytest.mark.parametrize("seed", range(8))
def test_mgda_float32_solver_equals_libmtl_bit_for_bit(seed):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(4, 50, generator=g)
    G[1] = -0.6 * G[0] + 0.3 * G[1]
    ref = _libmtl_min_norm(G)
    m = methods.create("mgda", num_tasks=4, solver_dtype="float32")
    got = m.aggregate(G, torch.ones(4)).info["min_norm_weights"]
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    double = find_min_norm_element(G.double() @ G.double().T).weights
    assert torch.allclose(double.float(), ref, atol=1e-4)  # default float64: close, not identical
