"""NTKMTL-SR (Qin et al., NeurIPS 2025): NTKMTL on the shared representation with n sample groups,
as the authors' repository implements it (jianke0604/NTKMTL methods/weight_methods.py, the
commented "NTKMTL-SR" block of `NTKMTL.get_weighted_loss`, with experiments/quantum_chemistry/
trainer.py's `num_split = 4` chunking of the per-sample losses).

The batch's per-sample losses [B, T] are split into n = `num_splits` chunks (`torch.chunk`, so the
last may be smaller) and averaged per chunk: L [n, T]. For each task, J_t [n, F] holds the
gradients of its n chunk losses w.r.t. the shared representation z; its NTK is J_t J_t^T and
λ_t its largest eigenvalue (`eigvalsh`). The objective is

    Σ_t (Σ_j λ_j / λ_t) ^ ntk_exp · mean_chunks(L)_t

(weights in float64 as the reference's numpy array), one backward through the whole network:
heads get the weighted gradients. n T extra backward passes reach only the heads (z is their
input). The reference clips the shared gradient with `clip_grad_norm_` *before* `loss.backward()`
(base `WeightMethod.backward`), when `optimizer.zero_grad()` has just cleared it: a no-op, so
`max_norm: 0` (no clipping) reproduces it; `max_norm > 0` clips after the backward, as NTKMTL does.

Needs per-sample losses and the representation (`needs = {"sample_losses", "features"}`; the
trainer provides both for benchmarks with `sample_losses`). A loop that passes only the batch
losses gets the n = 1 limit on the shared parameters, λ_t = ‖∂L_t/∂θ_shared‖² (one warning).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from mtl.methods.base import Method
from mtl.methods._hparams import Int, Real
from mtl.methods.registry import register


def ntk_sr_weights(chunk_losses: torch.Tensor, z: torch.Tensor, ntk_exp: float, check=None) -> np.ndarray:
    """(Σ λ / λ_t) ** ntk_exp, λ_t the largest eigenvalue of task t's NTK on z from the chunk
    losses [n, T] (float64, as the reference). `check(J)` sees every task's J before it is used
    (fp16: `GradientEngine.check` raises on inf/NaN)."""
    n, T = chunk_losses.shape
    lam = np.array([0.0] * T)
    for i in range(T):
        J = []
        for j in range(n):
            delta = torch.autograd.grad(chunk_losses[j][i], z, retain_graph=True)
            J.append(torch.cat([torch.flatten(g) for g in delta]))
        J = torch.stack(J)
        if check is not None:
            check(J)
        lam[i] = torch.linalg.eigvalsh(J.mm(J.t()))[-1]
    return np.power(np.sum(lam) / lam, ntk_exp)


@register
class NTKMTLSR(Method):
    name = "ntkmtl_sr"
    hparams = {"ntk_exp": Real(gt=0), "num_splits": Int(ge=1), "max_norm": Real(ge=0)}
    needs = frozenset({"sample_losses", "features"})

    def __init__(self, num_tasks: int, *, ntk_exp: float = 0.5, num_splits: int = 4, max_norm: float = 0.0,
                 **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.ntk_exp, self.num_splits, self.max_norm = ntk_exp, num_splits, max_norm
        self._warned = False

    def _backward(self, losses, shared_params, task_params, rep):
        ctx = self.step_context
        if ctx is not None and ctx.sample_losses is not None and ctx.features is not None:
            per = ctx.sample_losses
            chunks = torch.chunk(per, self.num_splits, dim=0)
            L = self._transform(torch.stack([c.mean(dim=0) for c in chunks], dim=0))
            lam = ntk_sr_weights(L, ctx.features.leaf, self.ntk_exp, check=self.engine.check)
            self.engine.backward_passes += L.numel()
            objective = torch.sum(torch.mean(L, 0) * torch.tensor(lam).to(L.device))
            objective.backward()
            ctx.features.value.backward(ctx.features.leaf.grad)
        else:
            if not self._warned:
                warnings.warn("ntkmtl_sr: no per-sample losses and representation (StepContext): using the n = 1 "
                              "limit on the shared parameters", stacklevel=3)
                self._warned = True
            G = self.engine.jacobian(losses, shared_params, retain_graph=True).shared  # checked (fp16)
            lam = (G.double() ** 2).sum(1).cpu().numpy()
            lam = np.power(np.sum(lam) / lam, self.ntk_exp)
            torch.sum(losses * torch.tensor(lam).to(losses.device)).backward()
        self.engine.backward_passes += 1
        norm = None
        if self.max_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(shared_params, self.max_norm)
        out = {"weights": torch.as_tensor(lam, dtype=torch.float32, device=losses.device)}
        if norm is not None:
            out["shared_grad_norm"] = norm.detach()
        return out

    def _transform(self, L):
        from mtl.methods.base import transform_losses
        return transform_losses(L, self.loss_transform)
