"""FAMO (fast adaptive multitask optimisation), as LibMTL weighting/FAMO.py / the FAMO repo.

Objective sum_t z_t log(D_t) / c with z = softmax(w), D = L - L_min + 1e-8 (L_min = 0) and
c = sum z/D detached. After the optimizer step the trainer re-evaluates the losses on the same
batch and `after_step` moves the logits w with the method's own Adam (lr w_lr, weight decay gamma)
along J_softmax(w)^T (log D_prev - log D_new). The Adam state is part of `state_dict`.
"""
import torch
from torch import nn

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Real
from mtl.methods.registry import register

FAMO_EPS = 1e-8


@register
class FAMO(LossWeighting):
    name = "famo"
    _optimizer_attrs = ("w_opt",)
    logs_losses = True
    hparams = {"w_lr": Real(gt=0), "gamma": Real(ge=0)}  # gamma: weight decay of the logits' Adam
    wants_post_step_losses = True
    _state_attrs = ("prev_losses",)

    def __init__(self, num_tasks: int, *, w_lr: float = 0.025, gamma: float = 1e-3, **kw):
        super().__init__(num_tasks, **kw)
        self.w = nn.Parameter(torch.zeros(num_tasks))
        self.min_losses = torch.zeros(num_tasks)
        self.w_opt = torch.optim.Adam([self.w], lr=float(w_lr), weight_decay=float(gamma))
        self.prev_losses: torch.Tensor | None = None

    def task_terms(self, losses: torch.Tensor):
        self.prev_losses = losses.detach()
        z = torch.softmax(self.w.detach(), dim=-1).to(losses.dtype)
        D = losses - self.min_losses.to(losses.device, losses.dtype) + FAMO_EPS
        c = (z / D.detach()).sum()
        w = z / c
        return w * D.log(), w

    def after_step(self, new_losses: torch.Tensor) -> None:
        if self.prev_losses is None:
            raise RuntimeError("famo: after_step called before backward")
        from mtl.methods.base import transform_losses

        new = transform_losses(new_losses.detach(), self.loss_transform)
        m = self.min_losses.to(new.device, new.dtype)
        delta = (self.prev_losses - m + FAMO_EPS).log() - (new - m + FAMO_EPS).log()
        with torch.enable_grad():
            d = torch.autograd.grad(torch.softmax(self.w, dim=-1), self.w, grad_outputs=delta.to(self.w.dtype))[0]
        self.w_opt.zero_grad(set_to_none=False)
        self.w.grad = d
        self.w_opt.step()


