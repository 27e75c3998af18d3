"""ConFIG (Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks",
ICLR 2025), as the authors' package `conflictfree` (tum-pbs/ConFIG, `ConFIGOperator` with its
defaults: EqualWeight, ProjectionLength, allow_simplified_model=True, use_least_square=True) and its
MTL experiment (experiments/MTL/methods/weight_methods.py `ConFIG`) use it.

General case: units u_t = g_t / ‖g_t‖ (NaN rows from zero gradients set to 0), the direction d solves
u d = 1 in the least-squares sense (`torch.linalg.lstsq`, the minimum-norm solution when T < D), and
the update is (Σ_t g_t · d̂) d̂ with d̂ = d / ‖d‖ (zero if d = 0). Every task's cosine with the update
is the same, so the update conflicts with none. Two tasks (`allow_simplified_model`): the closed
form of `ConFIG_update_double`, the sum of the unit components of each gradient orthogonal to the
other, rescaled the same way; mathematically the same direction, in different floating point.
`solver=pinv`: pinv(u) @ 1 as torchjd's `aggregation.ConFIG` (which also never takes the two-task
shortcut: set allow_simplified_model=false for torchjd's numbers). Heads get the plain sum of their
task gradients (the experiment's `losses.sum()` backward on task-specific parameters).
"""
from __future__ import annotations

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Bool, Choice
from mtl.methods.registry import register

SOLVERS = ("lstsq", "pinv")


def _unit(v: torch.Tensor) -> torch.Tensor:
    """conflictfree.utils.unit_vector: v / ‖v‖, or zeros for the zero vector."""
    n = v.norm()
    return torch.zeros_like(v) if n == 0 else v / n


def _projection_length(direction: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """ProjectionLength.rescale_length: (Σ_t g_t · d̂) d̂."""
    unit = _unit(direction)
    return torch.stack([g @ unit for g in G]).sum() * unit


def config_direction(G: torch.Tensor, *, simplified: bool = True, solver: str = "lstsq") -> torch.Tensor:
    """The ConFIG update of the task gradients G [T, D] (equal weights)."""
    if solver not in SOLVERS:
        raise ValueError(f"ConFIG solver {solver!r} unknown; choose one of {SOLVERS}")
    T = G.shape[0]
    w = torch.ones(T, dtype=G.dtype, device=G.device)
    if T == 2 and simplified:
        g1, g2 = G[0], G[1]
        n1, n2 = g1.norm(), g2.norm()
        u1, u2 = g1 / n1, g2 / n2
        cos = (g1 @ g2) / n1 / n2
        o1 = _unit(g2 - n2 * cos * u1)   # part of g2 orthogonal to g1
        o2 = _unit(g1 - n1 * cos * u2)   # part of g1 orthogonal to g2
        c1 = (o2 @ u1) / (w[0] / w[1] * (o1 @ u2))
        return _projection_length(c1 * o1 + 1 * o2, G)
    units = torch.nan_to_num(G / G.norm(dim=1).unsqueeze(1), 0)
    d = torch.linalg.lstsq(units, w).solution if solver == "lstsq" else torch.linalg.pinv(units) @ w
    return _projection_length(d, G)


@register
class ConFIG(GradientMethod):
    name = "config"
    hparams = {"allow_simplified_model": Bool(), "solver": Choice(*SOLVERS)}
    head_grads = "plain"

    def __init__(self, num_tasks: int, *, allow_simplified_model: bool = True, solver: str = "lstsq", **kwargs):
        super().__init__(num_tasks, **kwargs)
        if solver not in SOLVERS:
            raise ValueError(f"ConFIG solver {solver!r} unknown; choose one of {SOLVERS}")
        self.allow_simplified_model = bool(allow_simplified_model)
        self.solver = solver

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        d = config_direction(G.detach(), simplified=self.allow_simplified_model, solver=self.solver)
        return Aggregate(direction=d)
