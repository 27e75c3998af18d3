"""Office-31 / Office-Home network (LibMTL `examples/office/main.py`, DB-MTL Table 4).

Shared encoder: ResNet-18 (ImageNet init) -> global average pool -> Linear(512, 512) + BatchNorm1d
+ ReLU + Dropout(0.5); one Linear(512, C) head per domain. Multi-input: each domain's batch goes
through the shared encoder on its own (so BatchNorm statistics are per-domain batches, as in LibMTL's
multi_input trainer) and then through its own head.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from mtl.models.base import MultiTaskModel
from mtl.errors import InvalidCombination, MTLError


class PretrainedWeightsUnavailable(MTLError):
    """ImageNet weights were requested but could not be downloaded or found in the torch hub cache."""


def resnet18_backbone(pretrained: bool) -> nn.Module:
    """torchvision ResNet-18 without its classifier: images -> pooled 512-d features.
    ImageNet weights: torchvision IMAGENET1K_V1 (the original 69.76% top-1 weights that LibMTL's
    `resnet18(pretrained=True)` loads from the old model-zoo URL)."""
    if not pretrained:
        net = resnet18(weights=None)
    else:
        weights = ResNet18_Weights.IMAGENET1K_V1
        try:
            net = resnet18(weights=weights)
        except OSError as err:  # URLError, timeouts, unreachable host
            cache = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for ResNet-18 could not be loaded ({type(err).__name__}: {err}). "
                f"Either make {weights.url} reachable, or copy that file to {cache} (set TORCH_HOME to "
                f"move the cache), or train from scratch with benchmark.build.pretrained=false (numbers "
                f"are then not comparable with DB-MTL Table 4).") from err
    net.fc = nn.Identity()
    return net


class OfficeEncoder(nn.Module):
    def __init__(self, pretrained: bool = True, hidden_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.backbone = resnet18_backbone(pretrained)
        self.hidden = nn.Sequential(nn.Linear(512, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                                    nn.Dropout(dropout))
        # LibMTL examples/office/main.py initialisation of the hidden layer
        nn.init.normal_(self.hidden[0].weight, 0.0, 0.005)
        nn.init.constant_(self.hidden[0].bias, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.backbone(x))


class OfficeNet(MultiTaskModel):
    """forward({task: images}) -> ({task: logits}, None). Only the tasks present in the input run."""

    supports_rep_grad = False  # multi-input: one representation per domain batch, no common one

    def __init__(self, tasks: Sequence[str], num_classes: int, pretrained: bool = True,
                 hidden_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.encoder = OfficeEncoder(pretrained, hidden_dim, dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(hidden_dim, num_classes) for t in tasks})

    def forward(self, x: Mapping[str, torch.Tensor], rep_grad: bool = False):
        if rep_grad:
            raise InvalidCombination(
                "rep_grad=True is not supported on the multi-input Office benchmarks: each domain has its "
                "own input batch, so each task's loss depends only on its own representation and there is "
                "no shared representation whose per-task gradients could be compared. Run the method "
                "with rep_grad=false (gradients w.r.t. the shared parameters).")
        if not isinstance(x, Mapping):
            raise TypeError("OfficeNet is multi-input: pass {task: images}, one batch per domain")
        unknown = set(x) - set(self.heads)
        if unknown:
            raise KeyError(f"no head for {sorted(unknown)}; heads: {list(self.heads)}")
        return {t: self.heads[t](self.encoder(xt)) for t, xt in x.items()}, None

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())
