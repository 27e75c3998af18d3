"""MOML, multi-objective meta learning (Ye et al., NeurIPS 2021; AIJ 2024), as LibMTL implements it
(LibMTL/trainer.py `bacth_forward_MOML`, "a special implementation of MOML, which is fast but only
supports the case of inner_step=1").

Task weights softmax(α) (α initially 1/T) weigh the training objective Σ_t softmax(α)_t L_t. Before
each step's forward (`before_step`), on a copy of the model (made afresh every step, as the
reference's `copy.deepcopy`):
  1. g_f [T, D]: per-task gradients of the inner batch's losses w.r.t. all the copy's parameters;
  2. one SGD step on the copy: θ' = θ − inner_lr · softmax(α) g_f;
  3. g_F_t: per-task gradients of the outer batch's losses at θ'; row t of the upper-level
     Jacobian is −inner_lr · g_F_t g_f^T J_softmax(α);
  4. the rows are l2-normalised and combined by MGDA's min-norm weights (LibMTL's float32 solver,
     `mtl.methods.mgda.find_min_norm_element`); the result is α's gradient, one Adam step
     (lr outer_lr).
Batches: inner = the step's batch, outer = `val_batch` (another shuffle of the training set). The
reference's own loop differs in its schedule, not in this arithmetic: inner and outer batches of half
the batch size, half the steps per epoch, and the model update on a third batch.
Reference bug: step 1 and 3 call `torch.autograd.grad(loss_t, model.parameters())` without
`allow_unused`, which raises for any parameter task t's loss does not reach (another task's head, so
every hard-parameter-sharing model); here those gradients are zeros, what the formula means.
A min-norm search that does not converge uses its last iterate (the reference's solver returns
None and crashes), counted in `solver_failures_total`.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mtl.methods.base import LossWeighting, StepContext
from mtl.methods.mgda import find_min_norm_element
from mtl.methods._hparams import Real
from mtl.methods.registry import register


def flat_grads(loss, params, retain_graph=True) -> torch.Tensor:
    """∂loss/∂params flattened, zeros where the loss does not reach a parameter."""
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).view(-1) for g, p in zip(grads, params)])


@register
class MOML(LossWeighting):
    name = "moml"
    _optimizer_attrs = ("alpha_opt",)
    hparams = {"inner_lr": Real(gt=0), "outer_lr": Real(gt=0)}
    needs = frozenset({"passes", "val_batch"})
    _state_attrs = ("solver_failures_total",)

    def __init__(self, num_tasks: int, *, inner_lr: float = 0.1, outer_lr: float = 1e-3, **kw):
        super().__init__(num_tasks, **kw)
        self.inner_lr = float(inner_lr)
        self.alpha = nn.Parameter(torch.full((num_tasks,), 1.0 / num_tasks))  # LibMTL TW.weights
        self.alpha_opt = torch.optim.Adam([self.alpha], lr=float(outer_lr))
        self.solver_failures_total = 0

    def task_terms(self, losses):
        w = F.softmax(self.alpha.detach(), dim=-1).to(losses.dtype)
        return w * losses, w

    def before_step(self, ctx: StepContext) -> None:
        T, lr = self.num_tasks, self.inner_lr
        meta_model = copy.deepcopy(ctx.model)
        params = list(meta_model.parameters())
        losses = ctx.loss_fn(meta_model, ctx.batch)
        g_f = torch.stack([flat_grads(losses[t], params) for t in range(T)])
        alpha = self.alpha.data.clone()
        beg = 0
        for p in params:
            p.data -= lr * (F.softmax(alpha, dim=-1) @ g_f[:, beg:beg + p.numel()]).view(p.size())
            beg += p.numel()
        g_s = torch.autograd.functional.jacobian(lambda x: F.softmax(x, dim=-1), alpha)
        losses = ctx.loss_fn(meta_model, ctx.val_batch)
        alpha_grad = torch.zeros(T, T, device=alpha.device)
        for t in range(T):
            alpha_grad[t] = -lr * flat_grads(losses[t], params) @ g_f.t() @ g_s
        self.engine.backward_passes += 2 * T
        alpha_grad = alpha_grad / alpha_grad.pow(2).sum(-1).sqrt().unsqueeze(1).repeat(1, T)  # LibMTL 'l2'
        res = find_min_norm_element(alpha_grad.mm(alpha_grad.t()), dtype=torch.float32)
        self.solver_failures_total += int(not res.converged)
        sol = res.weights.to(alpha_grad.device)
        alpha_grad = sum([sol[t] * alpha_grad[t] for t in range(T)])
        self.alpha_opt.zero_grad()
        self.alpha.grad = alpha_grad
        self.alpha_opt.step()


