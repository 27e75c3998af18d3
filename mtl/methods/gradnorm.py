"""GradNorm (Chen et al., ICML 2018) as LibMTL `weighting/GradNorm.py` implements it.

Epoch 0 is equal weighting (sum of losses). Afterwards the weights are w = T * softmax(p)
(so they always sum to T) and the shared update is sum_t w_t g_t. The GradNorm loss
sum_t |‖w_t g_t‖ − mean_s ‖w_s g_s‖ · r_t^α| (target detached) is backpropagated into p only;
the trainer's optimizer updates p (`trainable_parameters`), as LibMTL's main optimizer does.
r_t = (L_t / L_t(0)) / mean_s(L_s / L_s(0)), with L(0) = the mean raw training loss of epoch 0
(LibMTL's train_loss_buffer[:, 0]: weighted by batch size) and L_t the current raw mini-batch loss. Heads get the plain
gradient of their own loss (LibMTL mode='backward').

Deviation: in rep-grad mode LibMTL's epoch-0 `loss.backward()` stops at the detached
representation, so the encoder is not trained during epoch 0; here the representation gradient is
pushed through the encoder, so epoch 0 is real EW in both modes.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl.errors import MissingEpochStatistics
from mtl.methods.base import Aggregate, GradientMethod, check_losses
from mtl.methods._hparams import Real
from mtl.methods.registry import register


def gradnorm_weights(param: torch.Tensor) -> torch.Tensor:
    """w = T * softmax(param): positive, sums to T."""
    return param.numel() * torch.softmax(param, dim=-1)


def gradnorm_loss(weights: torch.Tensor, G: torch.Tensor, loss_ratio: torch.Tensor, alpha: float) -> torch.Tensor:
    """sum_t |‖w_t g_t‖ − Ḡ r_t^α| with Ḡ = mean_t ‖w_t g_t‖, r = loss_ratio / mean(loss_ratio),
    the target term detached (only `weights` carries a graph)."""
    norms = torch.norm(weights.unsqueeze(1) * G.detach(), dim=1)
    r = loss_ratio / loss_ratio.mean()
    target = (norms.mean() * r.pow(alpha)).detach()
    return (norms - target).abs().sum()


@register
class GradNorm(GradientMethod):
    name = "gradnorm"
    hparams = {"alpha": Real(ge=0)}
    supports_rep_grad = True
    _state_attrs = ("initial_losses",)
    epoch_loss_mean = "batch"  # L(0) = LibMTL train_loss_buffer[:, 0], a batch-size weighted mean

    def __init__(self, num_tasks: int, *, alpha: float = 1.5, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.alpha = alpha
        self.loss_scale = nn.Parameter(torch.ones(num_tasks))  # LibMTL init 1.0 (softmax -> equal)
        self.initial_losses: torch.Tensor | None = None
        self._raw: torch.Tensor | None = None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.loss_scale]

    def weights_now(self) -> torch.Tensor:
        return gradnorm_weights(self.loss_scale.detach())

    def on_epoch_end(self, epoch: int) -> None:
        if epoch == 0:
            self.initial_losses = self.epoch_mean_losses().clone()

    def backward(self, losses, shared_params, task_params=(), *, rep=None, batch_size=None):
        check_losses(self, losses, values=False)  # the values are checked in Method.backward
        self._raw = losses.detach()
        return super().backward(losses, shared_params, task_params, rep=rep, batch_size=batch_size)

    def _backward(self, losses, shared_params, task_params, rep):
        if self.initial_losses is None:
            if self.epoch >= 1:
                raise MissingEpochStatistics("gradnorm: epoch >= 1 but L(0) is unset; the trainer must call "
                                             "on_epoch_end(0) after the first epoch")
            losses.sum().backward()
            if self.rep_grad:
                rep.value.backward(rep.leaf.grad)
            return {"weights": torch.ones(self.num_tasks)}
        return super()._backward(losses, shared_params, task_params, rep)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        w = gradnorm_weights(self.loss_scale)
        ratio = self._raw.to(G.device, G.dtype) / self.initial_losses.to(G.device, G.dtype)
        lgrad = gradnorm_loss(w, G, ratio, self.alpha)
        lgrad.backward()  # fills loss_scale.grad; G is detached, the network is untouched
        return Aggregate(weights=w.detach().to(G.dtype), info={"gradnorm_loss": lgrad.detach()})
