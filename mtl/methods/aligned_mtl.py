"""Aligned-MTL (Senushkin et al., CVPR 2023) as LibMTL `weighting/Aligned_MTL.py` implements it.

Eigendecomposition of the Gram matrix M = G Gᵀ = V Λ Vᵀ (`torch.linalg.eigh`; LibMTL calls the
removed `torch.symeig`), keeping eigenvalues > max(λ)·T·eps(dtype of G); B = √λ_min · V Λ^{-1/2} Vᵀ
makes the aligned gradients B G have equal singular values √λ_min; the weights are the column
sums of B, so the update Σ_t α_t g_t is the sum of the aligned gradients. "aligned_mtl_ub" is the
rep-grad variant (the paper's upper-bound version).
"""
from __future__ import annotations

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods.registry import register


def aligned_mtl_matrix(G: torch.Tensor) -> torch.Tensor:
    """B [T, T] with B G the aligned task gradients."""
    M = (G.double() @ G.double().T)
    lmbda, V = torch.linalg.eigh(M)
    tol = lmbda.max() * max(M.shape) * torch.finfo(G.dtype).eps
    rank = int((lmbda > tol).sum())
    if rank == 0:  # all task gradients are zero: nothing to align (LibMTL crashes on lmbda[-1])
        return torch.zeros_like(M).to(G.dtype)
    order = torch.argsort(lmbda, descending=True)
    lmbda, V = lmbda[order][:rank], V[:, order][:, :rank]
    B = lmbda[-1].sqrt() * (V @ torch.diag(1 / lmbda.sqrt()) @ V.T)
    return B.to(G.dtype)


def aligned_mtl_weights(G: torch.Tensor) -> torch.Tensor:
    return aligned_mtl_matrix(G).sum(0)


@register
class AlignedMTL(GradientMethod):
    name = "aligned_mtl"
    supports_rep_grad = True

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        return Aggregate(weights=aligned_mtl_weights(G))


@register
class AlignedMTLUB(AlignedMTL):
    name = "aligned_mtl_ub"

    def __init__(self, num_tasks: int, *, rep_grad: bool = True, **kwargs):
        super().__init__(num_tasks, rep_grad=rep_grad, **kwargs)
