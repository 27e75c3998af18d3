"""NTKMTL (Qin et al., "NTKMTL: Mitigating Task Imbalance in Multi-Task Learning from Neural Tangent
Kernel Perspective", NeurIPS 2025), as the authors' repository (jianke0604/NTKMTL,
methods/weight_methods.py `NTKMTL`, the n = 1 variant its experiments run) implements it.

With n = 1 sample group each task's NTK is the scalar ‖g_t‖² (g_t: the task's shared-parameter
gradient). The task weights balance the NTK eigenvalues:

    w_t = (Σ_j ‖g_j‖² / ‖g_t‖²) ^ ntk_exp          (ntk_exp = 0.5: the paper's square root)

and the shared update is T Σ_t w_t g_t ("to match the sum loss"), then clipped to `max_norm` as
`torch.nn.utils.clip_grad_norm_` does on the shared parameters (norm over the per-tensor norms,
coefficient max_norm / (norm + 1e-6), at most 1). Heads get the plain sum of their task gradients
(the reference backpropagates each task loss in turn). NTKMTL-SR (per-sample-group NTKs on the
shared representation) is `ntkmtl_sr`.
"""
from __future__ import annotations

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Real
from mtl.methods.registry import register


def ntk_weights(grads: torch.Tensor, ntk_exp: float) -> torch.Tensor:
    """(trace(G G^T) / diag(G G^T)) ** ntk_exp for the per-task gradients as columns, grads [D, T]."""
    gtg = grads.t().mm(grads)
    return torch.pow(torch.trace(gtg) / gtg.diagonal(), ntk_exp)


def clip_like_torch(direction: torch.Tensor, sizes, max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`clip_grad_norm_(params, max_norm)` applied to the flat gradient of tensors of `sizes`."""
    norm = torch.nn.utils.get_total_norm(list(direction.split(list(sizes))), 2.0)
    if max_norm > 0:
        direction = direction * torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    return direction, norm


@register
class NTKMTL(GradientMethod):
    name = "ntkmtl"
    hparams = {"ntk_exp": Real(gt=0), "max_norm": Real(ge=0)}  # max_norm 0: no clipping
    head_grads = "plain"

    def __init__(self, num_tasks: int, *, ntk_exp: float = 0.5, max_norm: float = 1.0, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.ntk_exp, self.max_norm = ntk_exp, max_norm

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        # the reference's [D, T] layout (a copy of G): its products are then the same floating point
        grads = G.T.contiguous()
        w = ntk_weights(grads, self.ntk_exp)
        direction = (grads @ w) * self.num_tasks
        sizes = self.param_sizes if self.param_sizes and sum(self.param_sizes) == G.shape[1] else [G.shape[1]]
        direction, norm = clip_like_torch(direction, sizes, self.max_norm)
        return Aggregate(weights=w * self.num_tasks, direction=direction, info={"shared_grad_norm": norm.detach()})
