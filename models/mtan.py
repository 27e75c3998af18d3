"""MTAN over a ResNet encoder (LibMTL architecture/MTAN.py; Liu et al., CVPR 2019).

The ResNet stem and its four stages are shared. Each task owns, per stage i, an attention module
(1x1 conv - BN - ReLU - 1x1 conv - BN - sigmoid) that reads the output of the stage's blocks
except the last (and, from stage 2 on, the task's attended feature of the previous stage) and
masks the output of the stage's last block. A shared "block attention" (a ResNet block with a 1x1
projection) carries the attended feature to the next stage's width; after stage 1 it is max-pooled
2x2, later only when the next stage's map is smaller (never with a dilated ResNet). Each task's
head reads its own stage-4 attended feature.

Parameter split as LibMTL's `get_share_params`: shared = stem + stages; the attention modules and
the block-attention layers count as task-specific (they receive the plain sum of task gradients).
Old LibMTL versions built the per-task attention list as `[module] * T` (one module shared by all
tasks); current LibMTL and MTAN use one module per task, as here.
Per-task representations: no rep-grad mode.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from mtl.models.base import MultiTaskModel
from mtl.models.resnet import ResNetEncoder
from mtl.errors import InvalidCombination


def attention_layer(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout), nn.Sigmoid(),
    )


def block_attention(cin: int, planes: int, expansion: int) -> nn.Module:
    down = nn.Sequential(nn.Conv2d(cin, planes * expansion, 1, bias=False), nn.BatchNorm2d(planes * expansion))
    block = Bottleneck if expansion == 4 else BasicBlock
    return block(cin, planes, downsample=down)


class MTAN(MultiTaskModel):
    supports_rep_grad = False

    def __init__(self, encoder: ResNetEncoder, heads: dict[str, nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        e = encoder.expansion
        ch = encoder.channels  # [64, 128, 256, 512] * expansion for torchvision ResNets
        self.attention = nn.ModuleDict({
            t: nn.ModuleList(
                [attention_layer(ch[0], ch[0] // e, ch[0])]
                + [attention_layer(2 * ch[i], ch[i] // e, ch[i]) for i in range(1, 4)])
            for t in heads
        })
        self.block_attention = nn.ModuleList([block_attention(ch[i], ch[i + 1] // e, e) for i in range(3)])
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x, rep_grad: bool = False, tasks: Sequence[str] | None = None):
        if rep_grad:
            raise InvalidCombination("MTAN has one representation per task; rep_grad=True is not "
                                     "supported (use rep_grad=false)")
        names = list(self.heads) if tasks is None else list(tasks)
        h = self.encoder.stem(x)
        att: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.encoder.layers):
            inner = layer[:-1](h)
            h = layer[-1](inner)
            for t in names:
                if i == 0:
                    mask = self.attention[t][0](inner)
                else:
                    prev = att[t]
                    if prev.shape[-2:] != inner.shape[-2:]:
                        prev = self.pool(prev)
                    mask = self.attention[t][i](torch.cat([inner, prev], dim=1))
                a = mask * h
                if i < 3:
                    a = self.block_attention[i](a)
                if i == 0:
                    a = self.pool(a)
                att[t] = a
        return {t: self.heads[t](att[t]) for t in names}, None

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return (list(self.attention.parameters()) + list(self.block_attention.parameters())
                + list(self.heads.parameters()))
