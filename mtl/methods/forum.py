"""FORUM (Ye et al., "A First-Order Multi-Gradient Algorithm for Multi-Objective Bi-Level
Optimization", ECAI 2024), as LibMTL implements it (LibMTL/trainer.py `bacth_forward_FORUM`).

Upper level: the task losses F_t(ω) on the outer batch; lower level: f(α, ω) = Σ_t softmax(α)_t
L_t(ω) on the inner batch. Each step (`before_step`, inner = the step's batch, outer = `val_batch`):
  g_f = ∇_(α, ω) f(α, ω); ω^K = `inner_step` SGD steps (lr `inner_lr`) on f from a copy of ω
  (stopped early when f > 1e5, as the reference); g_q = g_f − (∇_α f(α, ω^K), 0);
  ĝ_t = (0, ∇_ω F_t / ‖∇_ω F_t‖); π_t = φ − ĝ_t·g_q / (‖g_q‖² + 1e-8);
  w = argmin ‖(A A^T)^{1/2} w‖² − w_{T+1} φ (‖g_q‖² + 1e-8) over w ≥ 0, Σ_{t≤T} w_t = 1,
      w_{T+1} ≥ Σ_t w_t π_t  (A = [ĝ_1; …; ĝ_T; g_q]; the square root from `np.linalg.eig`; cvxpy's
      default solver, as the reference);
  λ ← λ + (epoch + 1)^{-3/4} (w_{≤T} − λ) (λ initially 0, carried across steps);
  ν = max(Σ_t λ_t π_t, 0); the update of (α, ω) is Σ_t λ_t ĝ_t + ν g_q: α with its own Adam (lr
  `outer_lr`), ω through the network's optimizer (`.grad` of every model parameter; heads included).
Under fp16 loss scaling a step whose gradients overflow is skipped (`NonFiniteGradients`, before α
or λ change); the reference runs in fp32 and would fail in `np.linalg.eig`.
Reference bug: `torch.autograd.grad(F_t, model.parameters())` without `allow_unused` raises for any
parameter F_t does not reach (another task's head); here those gradients are zeros. A loop that calls
only `backward` (no step context) trains with the weighted loss Σ softmax(α)_t L_t and never updates
α or λ.
"""
from __future__ import annotations

import copy

import cvxpy as cp
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl.engine import NonFiniteGradients
from mtl.methods.base import LossWeighting, StepContext
from mtl.methods.moml import flat_grads
from mtl.methods._hparams import Int, Real
from mtl.methods.registry import register


@register
class FORUM(LossWeighting):
    name = "forum"
    _optimizer_attrs = ("alpha_opt",)
    hparams = {"phi": Real(gt=0), "inner_lr": Real(gt=0), "outer_lr": Real(gt=0), "inner_step": Int(ge=1)}
    needs = frozenset({"passes", "val_batch"})
    _state_attrs = ("lambda_buffer",)

    def __init__(self, num_tasks: int, *, phi: float = 0.1, inner_lr: float = 0.1, outer_lr: float = 1e-3,
                 inner_step: int = 5, **kw):
        super().__init__(num_tasks, **kw)
        self.phi, self.inner_lr, self.inner_step = float(phi), float(inner_lr), int(inner_step)
        self.alpha = nn.Parameter(torch.full((num_tasks,), 1.0 / num_tasks))  # LibMTL TW.weights
        self.alpha_opt = torch.optim.Adam([self.alpha], lr=float(outer_lr))
        self.lambda_buffer = np.zeros([num_tasks])
        self._update: dict[int, torch.Tensor] | str | None = None

    def _tw(self, losses):
        """LibMTL's TW module: sum(softmax(α) * L)."""
        return torch.sum(torch.mul(F.softmax(self.alpha, dim=-1), losses))

    def before_step(self, ctx: StepContext) -> None:
        T, phi = self.num_tasks, self.phi
        model = ctx.model
        params = list(model.parameters())
        loss = self._tw(ctx.loss_fn(model, ctx.batch))
        g_f = torch.cat([g.view(-1) for g in torch.autograd.grad(loss, [self.alpha, *params])])
        inner_model = copy.deepcopy(model)
        inner_optim = torch.optim.SGD(inner_model.parameters(), lr=self.inner_lr, weight_decay=0)
        for _ in range(self.inner_step):
            loss = self._tw(ctx.loss_fn(inner_model, ctx.batch))
            if loss.item() > 1e+5:  # the reference: too large inner_lr and inner_step
                break
            inner_optim.zero_grad()
            loss.backward()
            inner_optim.step()
            self.alpha.grad = None  # the reference's tw_optimizer.zero_grad()
        loss = self._tw(ctx.loss_fn(inner_model, ctx.batch))
        g_f_hat_alpha = torch.cat([g.view(-1) for g in torch.autograd.grad(loss, [self.alpha])])
        g_q_beta = copy.deepcopy(g_f)
        g_q_beta[:T] = g_q_beta[:T] - g_f_hat_alpha
        losses = ctx.loss_fn(model, ctx.val_batch)
        g_F = torch.stack([flat_grads(losses[t], params) for t in range(T)])
        gn = g_F.pow(2).sum(-1).sqrt()
        g_F = g_F / gn.unsqueeze(1).repeat(1, g_F.size()[1])
        g_F = torch.cat([torch.zeros(T, T, device=g_F.device), g_F], dim=1)
        if not bool(torch.isfinite(torch.cat([g_q_beta, g_F.view(-1)])).all()):  # fp16 overflow: skip the step
            self._update = "non-finite"
            return
        qq = (g_q_beta.norm().pow(2) + 1e-8)
        pi = [phi - ((g_q_beta * g_F[t]).sum() / qq).item() for t in range(T)]
        w_constant = phi * qq.item()
        A = torch.cat([g_F, g_q_beta.unsqueeze(0)], dim=0)
        AAT = (A @ A.t()).detach().cpu().numpy()
        c, v = np.linalg.eig(AAT)
        gg_sqrt = v @ np.diag(np.sqrt(np.maximum(c, 0))) @ np.linalg.inv(v)
        g_cp = cp.Parameter(shape=(T + 1, T + 1), value=gg_sqrt)
        w_cp = cp.Variable(shape=(T + 1), nonneg=True)
        constraints = [cp.sum(w_cp[:-1]) == 1, w_cp[-1] >= cp.sum([w_cp[t] * pi[t] for t in range(T)]), w_cp >= 0]
        cp.Problem(cp.Minimize(cp.quad_over_lin(g_cp @ w_cp, 1) - w_cp[-1] * w_constant), constraints).solve()
        w_cpu = w_cp.value
        for t in range(T):
            self.lambda_buffer[t] = self.lambda_buffer[t] + (1 / (self.epoch + 1) ** (3 / 4)) * (w_cpu[t] - self.lambda_buffer[t])
        nu = max(sum([self.lambda_buffer[t] * pi[t] for t in range(T)]), 0)
        g_final = sum([self.lambda_buffer[t] * g_F[t] for t in range(T)]) + nu * g_q_beta
        self.engine.backward_passes += T + 2 + self.inner_step
        self.alpha_opt.zero_grad()
        self.alpha.grad = g_final[:T]
        self.alpha_opt.step()
        update, beg = {}, T
        for p in params:
            update[id(p)] = g_final[beg:beg + p.numel()].contiguous().view(p.data.size()).data.clone()
            beg += p.numel()
        self._update = update

    def _backward(self, losses, shared_params, task_params, rep):
        update, self._update = self._update, None
        if update == "non-finite":  # fp16: the step is skipped and the loss scale backed off, α and λ untouched
            raise NonFiniteGradients("forum: non-finite gradients in the bilevel step")
        if update is None:  # no step context: the lower-level objective with the current weights
            return super()._backward(losses, shared_params, task_params, rep)
        for p in [*shared_params, *task_params]:
            g = update[id(p)]
            p.grad = g if p.grad is None else p.grad.add_(g)
        return {"weights": torch.as_tensor(self.lambda_buffer, dtype=torch.float32, device=losses.device)}

    def task_terms(self, losses):
        w = F.softmax(self.alpha.detach(), dim=-1).to(losses.dtype)
        return w * losses, w


    def set_extra_state(self, state):
        super().set_extra_state(state)
        self.lambda_buffer = np.array(self.lambda_buffer, dtype=np.float64)
