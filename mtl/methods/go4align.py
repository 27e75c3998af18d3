"""GO4Align (Shen et al., "GO4Align: Group Optimization for Multi-Task Alignment", NeurIPS 2024), as
the authors' repository (autumn9999/GO4Align, methods/cluster_methods.py `GO4ALIGN`) implements it.

Each step, from the detached losses L:
    scale_t = Σ_j L_j / L_t
    p ← p ⊙ exp(−η L);  p ← p / Σ p        (risk-guided indicator, p initially 1/T, η = robust_step_size)
    v = scale ⊙ p
and the objective is Σ_t w_t L_t with the group weights w: for `num_groups: 1` (the trainer's
default, `--num_groups 1`) every task gets mean(v); for K >= 2 groups the values v (one scalar per
task) are clustered by k-means and each task gets its cluster's centre. p is carried across steps
(part of the checkpoint).

K-means as the `kmeans_pytorch` package the reference calls (euclidean Lloyd iterations from K
distinct random tasks as centres, stopped when (Σ_k ‖c_k − c_k^prev‖)² < 1e-4, in float32). The
reference draws the initial centres from numpy's global RNG; here from torch's, so runs follow the
run seed. Reference bugs: its `kmeans` import is commented out (K >= 2 raises NameError unless
kmeans_pytorch is installed and imported by hand), and a cluster left empty gets a NaN centre
(the mean of nothing), which makes the loss NaN; `empty_cluster: keep` (default) keeps that
centre where it was, `empty_cluster: nan` reproduces the reference.
"""
from __future__ import annotations

import torch

from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Choice, Int, Real
from mtl.methods.registry import register

KMEANS_TOL = 1e-4  # kmeans_pytorch default


def kmeans_1d(x: torch.Tensor, k: int, init: torch.Tensor, *, empty_cluster: str = "keep",
              tol: float = KMEANS_TOL, max_iter: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of the rows of x [N, F] from the initial centre indices `init` [k].
    Returns (cluster of each row [N], centres [k, F])."""
    x = x.float()
    centres = x[init].clone()
    for _ in range(max_iter):
        dist = ((x.unsqueeze(1) - centres.unsqueeze(0)) ** 2).sum(-1)  # [N, k]
        choice = torch.argmin(dist, dim=1)
        previous = centres.clone()
        for c in range(k):
            members = x[choice == c]
            if members.shape[0] > 0 or empty_cluster == "nan":
                centres[c] = members.mean(0)
        shift = ((centres - previous) ** 2).sum(1).sqrt().sum()
        if shift ** 2 < tol:
            break
    return choice, centres


@register
class GO4Align(LossWeighting):
    name = "go4align"
    hparams = {"num_groups": Int(ge=1), "robust_step_size": Real(ge=0), "empty_cluster": Choice("keep", "nan")}
    _state_attrs = ("adv_probs",)

    def __init__(self, num_tasks: int, *, num_groups: int = 1, robust_step_size: float = 1e-4,
                 empty_cluster: str = "keep", **kw):
        super().__init__(num_tasks, **kw)
        if num_groups > num_tasks:
            raise ValueError(f"go4align: num_groups={num_groups} exceeds the {num_tasks} tasks")
        self.num_groups, self.robust_step_size, self.empty_cluster = num_groups, robust_step_size, empty_cluster
        self.adv_probs = torch.ones(num_tasks) / num_tasks

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        L = losses.detach()
        scale = L.sum() / L
        p = self.adv_probs.to(L.device) * torch.exp(-self.robust_step_size * L)
        self.adv_probs = p / p.sum()
        v = (scale * self.adv_probs).unsqueeze(1)  # [T, 1]
        if self.num_groups == 1:
            return torch.ones(self.num_tasks, dtype=v.dtype, device=v.device) * v.mean()
        init = torch.randperm(self.num_tasks)[: self.num_groups].to(v.device)
        choice, centres = kmeans_1d(v, self.num_groups, init, empty_cluster=self.empty_cluster)
        mask = torch.zeros(self.num_tasks, self.num_groups, device=v.device)
        mask.scatter_(1, choice.unsqueeze(1), 1)
        return (mask @ centres).squeeze(1).to(v.dtype)
