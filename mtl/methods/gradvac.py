"""GradVac (Wang et al., ICLR 2021) as LibMTL `weighting/GradVac.py` implements it.

For each task i and each other task j (random order), per parameter group k:
  ρ = pc_i·g_j / (‖pc_i‖‖g_j‖ + 1e-8)   (pc_i: task i's gradient modified so far, g_j: ORIGINAL)
  if ρ < ρ̄_ijk:  pc_i += g_j · ‖pc_i‖(ρ̄√(1−ρ²) − ρ√(1−ρ̄²)) / (‖g_j‖√(1−ρ̄²) + 1e-8)
  ρ̄_ijk ← (1−β) ρ̄_ijk + β ρ
The shared update is sum_i pc_i. ρ̄ starts at 0 (so the first step is PCGrad) and is created
once at the first step. Not available with rep-grad (LibMTL raises).

EMA placement (`ema_update`): "all" (default) updates ρ̄ for every pair, as the GradVac paper's
algorithm and LibMTL since commit d2d84fa ("fix a bug in GradVac", 2024-02-15) do;
"conflicting" updates it only inside the `if ρ < ρ̄` branch, as LibMTL did before that commit.
The DB-MTL tables (arXiv 2308.12029, 2023) may have been produced with the pre-fix code.

Groups (`group_type`): 0 whole model; 2 one group per shared parameter tensor; 1 one group per
layer. LibMTL's layers are the encoder's leaf modules; the method sees only the parameter
tensors, so by default a layer starts at every tensor with >= 2 dimensions and the following
1-D tensors (bias, norm affine) join it. This merges a BatchNorm into the conv before it; call
`set_layer_sizes([...numel per layer...])` (e.g. from `layer_sizes(encoder)`) for LibMTL's exact
grouping.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Choice, Real
from mtl.methods.registry import register


def layer_sizes(module: nn.Module) -> list[int]:
    """LibMTL's per-layer grouping: numel of each leaf module that owns parameters."""
    return [sum(p.numel() for p in m.parameters()) for m in module.modules()
            if len(m._modules) == 0 and len(m._parameters) > 0]


def group_sizes(shapes: Sequence[torch.Size], group_type: int, layers: Sequence[int] | None = None) -> list[int]:
    numels = [int(torch.Size(s).numel()) for s in shapes]
    if group_type == 0:
        return [sum(numels)]
    if group_type == 2:
        return numels
    if group_type == 1:
        if layers is not None:
            return list(layers)
        sizes: list[int] = []
        for s, n in zip(shapes, numels):
            if len(s) >= 2 or not sizes:
                sizes.append(n)
            else:
                sizes[-1] += n
        return sizes
    raise ValueError(f"GradVac group_type must be 0 (whole model), 1 (per layer) or 2 (per tensor), got {group_type}")


EMA_UPDATES = ("all", "conflicting")


def gradvac(G: torch.Tensor, rho: torch.Tensor, sizes: Sequence[int], beta: float,
            orders: Sequence[Sequence[int]] | None = None, ema_update: str = "all"
            ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One GradVac step. G [T, D]; rho [T, T, K] EMA targets (updated in place and returned).
    Returns (direction [D], rho, number of adjustments). orders[i]: visiting order of j != i.
    ema_update: "all" pairs (paper, current LibMTL) or only "conflicting" ones (LibMTL before d2d84fa)."""
    if ema_update not in EMA_UPDATES:
        raise ValueError(f"GradVac ema_update {ema_update!r} unknown; choose one of {EMA_UPDATES}")
    T, D = G.shape
    if sum(sizes) != D:
        raise ValueError(f"GradVac groups cover {sum(sizes)} entries, the gradient has {D}")
    K = len(sizes)
    gid = torch.repeat_interleave(torch.arange(K, device=G.device), torch.tensor(list(sizes), device=G.device))

    def seg(x):  # per-group sums of a [D] vector
        return torch.zeros(K, dtype=x.dtype, device=x.device).index_add_(0, gid, x)

    gnorm = [seg(G[j] * G[j]).sqrt() for j in range(T)]
    pc = G.clone()
    count = 0
    for i in range(T):
        if orders is not None:
            order = list(orders[i])
        else:
            others = [j for j in range(T) if j != i]
            order = [others[k] for k in torch.randperm(len(others)).tolist()]
        for j in order:
            pnorm = seg(pc[i] * pc[i]).sqrt()
            r = seg(pc[i] * G[j]) / (pnorm * gnorm[j] + 1e-8)
            target = rho[i, j].clone()
            hit = r < target
            if bool(hit.any()):
                w = pnorm * (target * (1 - r ** 2).sqrt() - r * (1 - target ** 2).sqrt()) / (
                    gnorm[j] * (1 - target ** 2).sqrt() + 1e-8)
                w = torch.where(hit, w, torch.zeros_like(w))
                pc[i] += G[j] * w[gid]
                count += int(hit.sum())
            ema = (1 - beta) * target + beta * r  # r: the similarity before this pair's adjustment
            rho[i, j] = ema if ema_update == "all" else torch.where(hit, ema, target)
    return pc.sum(0), rho, count


@register
class GradVac(GradientMethod):
    name = "gradvac"
    hparams = {"beta": Real(ge=0, le=1), "group_type": Choice(0, 1, 2), "ema_update": Choice(*EMA_UPDATES)}
    _state_attrs = ("rho", "layers")

    def __init__(self, num_tasks: int, *, beta: float = 0.5, group_type: int = 0, ema_update: str = "all",
                 **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.ema_update = ema_update
        self.beta = beta
        self.group_type = group_type
        self.rho: torch.Tensor | None = None
        self.layers: list[int] | None = None
        self._sizes: list[int] | None = None

    def set_layer_sizes(self, sizes: Sequence[int]) -> None:
        """Exact per-layer groups for group_type=1 (numel per layer, in parameter order)."""
        self.layers = [int(s) for s in sizes]

    def _backward(self, losses, shared_params, task_params, rep):
        self._sizes = group_sizes([p.shape for p in shared_params], self.group_type, self.layers)
        return super()._backward(losses, shared_params, task_params, rep)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        sizes = self._sizes if self._sizes is not None else [G.shape[1]]
        if self.rho is None:
            self.rho = torch.zeros(self.num_tasks, self.num_tasks, len(sizes), dtype=G.dtype, device=G.device)
        elif self.rho.shape[-1] != len(sizes):
            raise ValueError(f"gradvac: {len(sizes)} parameter groups now, {self.rho.shape[-1]} at the first step")
        direction, self.rho, count = gradvac(G, self.rho.to(G.device), sizes, self.beta,
                                              ema_update=self.ema_update)
        return Aggregate(direction=direction, info={"adjustments": count})
