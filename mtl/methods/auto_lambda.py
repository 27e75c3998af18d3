"""Auto-Lambda (Liu, Davison & Johns, "Auto-Lambda: Disentangling Dynamic Task Relationships", TMLR
2022), as the authors' repository implements it (lorenmt/auto-lambda auto_lambda.py `AutoLambda`
and trainer_dense.py's loop), in the multi-task setting (every task primary).

Task weights λ (initially `weight_init` = 0.1) are meta-learned with their own Adam (lr `meta_lr`
= 1e-4). Before each step's training forward (`before_step`), on the step's batch (x, y) and a
second batch (x', y') of the training set in another order (the reference's `val_loader`):
  1. virtual step: θ' = θ − α (m + ∇_θ Σ_t λ_t L_t(θ; x) + wd θ), with α the network optimizer's
     current lr, wd its weight decay and m its SGD momentum buffer times momentum (0 for Adam), in
     a copy of the model made at the first step (the reference's `model_`);
  2. d = ∇_θ' Σ_t L_t(θ'; x') (primary tasks: all);
  3. ∂/∂λ by central differences: ε = 0.01 / ‖d‖, h = (∇_λ Σ λ_t L_t(θ + εd; x) − ∇_λ Σ λ_t
     L_t(θ − εd; x)) / 2ε, with θ perturbed in place and restored (θ + εd − 2εd + εd, as the
     reference: not bit-exact θ); λ.grad = −α h, one Adam step on λ.
Then the step's objective is Σ_t λ_t L_t (one backward; heads get the weighted gradients). Extra
passes per step: 4 forwards and 4 backwards. Under fp16 loss scaling a meta step whose gradients
overflow is skipped before θ is perturbed (`meta_skipped` counts them; the reference runs in fp32). In the training forward of the perturbed model, BatchNorm
running statistics move as in the reference. Needs "passes" and "val_batch" (the trainer
provides them); a loop that calls only `backward` trains with the current λ and never updates them.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from mtl.methods.base import LossWeighting, StepContext
from mtl.methods._hparams import Real
from mtl.methods.registry import register


def _finite(tensors) -> bool:
    """All finite (one host sync)."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _weighted(weights, losses):
    """sum([w * losses[i] for i, w in enumerate(weights)]): Python's sum, left to right from 0."""
    return sum([w * losses[i] for i, w in enumerate(weights)])


@register
class AutoLambda(LossWeighting):
    name = "auto_lambda"
    _optimizer_attrs = ("meta_opt",)
    hparams = {"weight_init": Real(), "meta_lr": Real(gt=0)}
    needs = frozenset({"passes", "val_batch"})
    _state_attrs = ("meta_skipped",)

    def __init__(self, num_tasks: int, *, weight_init: float = 0.1, meta_lr: float = 1e-4, **kw):
        super().__init__(num_tasks, **kw)
        self.meta_weights = nn.Parameter(torch.tensor([float(weight_init)] * num_tasks))
        self.meta_opt = torch.optim.Adam([self.meta_weights], lr=float(meta_lr))
        self._model_copy: list[nn.Module] = []  # a list: not a submodule of the method (not in its state)
        self.meta_skipped = 0  # meta steps skipped on non-finite gradients (fp16 overflow); the reference has none

    def task_terms(self, losses):
        w = self.meta_weights.detach().to(losses.dtype)
        return w * losses, w

    # ---- the meta step ----------------------------------------------------------------------
    def before_step(self, ctx: StepContext) -> None:
        model, optim = ctx.model, ctx.optimizer
        if not self._model_copy:
            self._model_copy.append(copy.deepcopy(model))
        model_ = self._model_copy[0]
        params = [p for p in model.parameters()]
        params_ = [p for p in model_.parameters()]
        group = optim.param_groups[0]
        alpha = group["lr"]
        self.meta_opt.zero_grad()
        # 1. virtual step theta' = theta - alpha (m + g + wd theta)
        loss = _weighted(self.meta_weights, ctx.loss_fn(model, ctx.batch))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for weight, weight_, grad in zip(params, params_, grads):
                if "momentum" in group:
                    m = optim.state[weight].get("momentum_buffer", 0.) * group["momentum"]
                else:
                    m = 0
                weight_.copy_(weight - alpha * (m + grad + group["weight_decay"] * weight))
        # 2. validation loss of the primary tasks at theta'
        val_loss = _weighted([1.0] * self.num_tasks, ctx.loss_fn(model_, ctx.val_batch))
        d_model = torch.autograd.grad(val_loss, params_, allow_unused=True)
        d_model = [torch.zeros_like(p) if d is None else d for d, p in zip(d_model, params_)]
        if not _finite([*grads, *d_model]):  # fp16: an overflowing pass skips the meta step, θ untouched
            self.meta_skipped += 1
            return
        # 3. finite-difference Hessian-vector product w.r.t. lambda
        eps = 0.01 / torch.cat([d.view(-1) for d in d_model]).norm()
        with torch.no_grad():
            for p, d in zip(params, d_model):
                p += eps * d
        d_weight_p = torch.autograd.grad(_weighted(self.meta_weights, ctx.loss_fn(model, ctx.batch)), self.meta_weights)
        with torch.no_grad():
            for p, d in zip(params, d_model):
                p -= 2 * eps * d
        d_weight_n = torch.autograd.grad(_weighted(self.meta_weights, ctx.loss_fn(model, ctx.batch)), self.meta_weights)
        with torch.no_grad():
            for p, d in zip(params, d_model):
                p += eps * d
        hessian = (d_weight_p[0] - d_weight_n[0]) / (2. * eps)
        self.engine.backward_passes += 4
        if not _finite([hessian]):
            self.meta_skipped += 1
            return
        with torch.no_grad():
            self.meta_weights.grad = -alpha * hessian
        self.meta_opt.step()

