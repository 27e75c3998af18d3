"""MetaBalance (He et al., WWW 2022): bring each task gradient's magnitude towards a reference
task's, per shared parameter tensor, with moving averages of the gradient norms.

Not in LibMTL; follows the authors' `MetaBalance` optimizer: per shared tensor p and task t,
n_t ← β n_t + (1 − β)‖g_t^p‖ (starts at 0, no bias correction), then
g_t ← r · (n_ref / n_t) g_t + (1 − r) g_t, and the shared gradient is Σ_t g_t (the trainer's
optimizer steps it). The paper has one target task and auxiliary tasks (reference = target, task
0 in the authors' code: `anchor="first"`). The suite's benchmarks have no designated target, so
the default `anchor="max"` uses the task with the largest norm average as reference (every task is
pulled towards the strongest, like DB-MTL's max-norm rule). A task whose norm average is 0 on a
tensor is left unscaled there (the authors' code divides by zero). Heads get the plain gradient
of their own loss. Not available with rep-grad.
"""
from __future__ import annotations

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods.mtadam import segment_norms
from mtl.methods._hparams import Choice, Real
from mtl.methods.registry import register


def metabalance_step(G: torch.Tensor, sizes, norms: torch.Tensor | None, beta: float = 0.9,
                     relax_factor: float = 0.7, anchor: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (shared direction [D], updated norm averages [T, K])."""
    cur, gid = segment_norms(G, sizes)
    norms = (1 - beta) * cur if norms is None else beta * norms + (1 - beta) * cur
    if anchor == "max":
        ref = norms.max(0).values
    elif anchor == "first":
        ref = norms[0]
    else:
        raise ValueError(f"MetaBalance anchor must be 'max' or 'first', got {anchor!r}")
    ratio = torch.where(norms > 0, ref.unsqueeze(0) / norms.clamp_min(1e-30), torch.ones_like(norms))
    scale = relax_factor * ratio + (1 - relax_factor)
    return (G * scale[:, gid]).sum(0), norms


@register
class MetaBalance(GradientMethod):
    name = "metabalance"
    hparams = {"beta": Real(ge=0, lt=1), "relax_factor": Real(ge=0, le=1), "anchor": Choice("max", "first")}
    _state_attrs = ("norms",)

    def __init__(self, num_tasks: int, *, beta: float = 0.9, relax_factor: float = 0.7, anchor: str = "max", **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.beta, self.relax_factor, self.anchor = beta, relax_factor, anchor
        self.norms: torch.Tensor | None = None

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        sizes = self.param_sizes if self.param_sizes is not None else [G.shape[1]]
        direction, self.norms = metabalance_step(G, sizes, self.norms, self.beta, self.relax_factor, self.anchor)
        return Aggregate(direction=direction)
