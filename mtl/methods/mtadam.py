"""MTAdam (Malkiel & Wolf 2020, arXiv 2006.14683): Adam with one set of moments per loss term,
each term's gradient first rescaled to the magnitude of the first (anchor) term. Not in LibMTL;
this follows the paper's Algorithm 1 and the authors' `mtadam.py`, adapted to the suite's contract
(a method fills `.grad`, the trainer's optimizer steps). Choices, per shared parameter tensor p
(the authors' granularity, "per layer"):

1. n_t ← β₃ n_t + (1 − β₃)‖g_t^p‖ (EMA of the gradient norm); at the first step n_t = ‖g_t^p‖ (the
   authors' initialisation, no bias correction). All T EMAs are updated before rescaling; the
   authors update term t's EMA just before using it, so later terms see the anchor's fresh value
   anyway: identical whenever the anchor is task 0.
2. anchor a = first task with n_a > 1e-10; g_t ← rank_t · n_a / n_t · g_t when n_t > 1e-10, else g_t
   is left unchanged (authors' rule). `ranks` default 1 (equal priority).
3. per-task Adam moments m_t ← β₁ m_t + (1−β₁) g_t, v_t ← β₂ v_t + (1−β₂) g_t², bias corrections
   with the common step count k.
4. update direction d = Σ_t (m_t / (1−β₁^k)) / max_t(√(v_t/(1−β₂^k)) + ε): the element-wise max of
   the denominators over terms, as the authors' code (the paper's Algorithm 1 prints the same).
5. `.grad` of the shared parameters receives d, so a plain SGD step with lr α reproduces MTAdam
   for the shared parameters; the authors' `lr` and weight decay are the trainer optimizer's.
   With Adam as trainer optimizer the result is Adam applied to d (flagged in docs/methods.md).
6. task heads get the plain gradient of their own loss (each head has one term, so MTAdam's
   balancing is the identity there) and are stepped by the trainer's optimizer.
Not available with rep-grad (the moments live on parameters).
"""
from __future__ import annotations

from typing import Sequence

import torch

from mtl.methods.base import Aggregate, GradientMethod
from mtl.methods._hparams import Either, ListOf, Null, Real
from mtl.methods.registry import register


def segment_norms(G: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """‖G[t, segment k]‖ as a [T, K] tensor."""
    K = len(sizes)
    gid = torch.repeat_interleave(torch.arange(K, device=G.device), torch.tensor(list(sizes), device=G.device))
    sq = torch.zeros(G.shape[0], K, dtype=G.dtype, device=G.device).index_add_(1, gid, G * G)
    return sq.sqrt(), gid


def mtadam_step(G: torch.Tensor, sizes: Sequence[int], state: dict, betas=(0.9, 0.999, 0.9), eps: float = 1e-8,
                ranks: torch.Tensor | None = None) -> torch.Tensor:
    """One MTAdam step on task gradients G [T, D]; `state` (dict with m, v, norms, step) is updated.
    Returns the update direction [D] (to be multiplied by −lr)."""
    b1, b2, b3 = betas
    T = G.shape[0]
    norms, gid = segment_norms(G, sizes)
    state["step"] = state.get("step", 0) + 1
    k = state["step"]
    if k == 1:
        state["norms"] = norms.clone()
        state["m"] = torch.zeros_like(G)
        state["v"] = torch.zeros_like(G)
    else:
        state["norms"] = b3 * state["norms"] + (1 - b3) * norms
    n = state["norms"]
    ranks = torch.ones(T, dtype=G.dtype, device=G.device) if ranks is None else ranks.to(G.device, G.dtype)
    live = n > 1e-10  # [T, K]
    anchor_idx = torch.argmax(live.to(torch.int8), dim=0)  # first live task per segment
    anchor = n.gather(0, anchor_idx.unsqueeze(0)).squeeze(0)  # [K]
    scale = torch.where(live, ranks.unsqueeze(1) * anchor.unsqueeze(0) / n.clamp_min(1e-30), torch.ones_like(n))
    g = G * scale[:, gid]
    state["m"] = b1 * state["m"] + (1 - b1) * g
    state["v"] = b2 * state["v"] + (1 - b2) * g * g
    denom = (state["v"] / (1 - b2 ** k)).sqrt() + eps
    return (state["m"] / (1 - b1 ** k)).sum(0) / denom.max(0).values


@register
class MTAdam(GradientMethod):
    name = "mtadam"
    hparams = {"betas": ListOf(Real(ge=0, lt=1), length=3), "eps": Real(gt=0),
               "ranks": Either(Null(), ListOf(Real(gt=0), length="num_tasks"))}
    _state_attrs = ("state",)

    def __init__(self, num_tasks: int, *, betas: Sequence[float] = (0.9, 0.999, 0.9), eps: float = 1e-8,
                 ranks: Sequence[float] | None = None, **kwargs):
        super().__init__(num_tasks, **kwargs)
        self.betas = tuple(float(b) for b in betas)
        self.eps = eps
        self.ranks = None if ranks is None else torch.tensor(list(ranks), dtype=torch.float32)
        self.state: dict = {}

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        sizes = self.param_sizes if self.param_sizes is not None else [G.shape[1]]
        direction = mtadam_step(G, sizes, self.state, self.betas, self.eps, self.ranks)
        return Aggregate(direction=direction)
