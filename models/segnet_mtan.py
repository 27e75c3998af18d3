"""SegNet-MTAN (MTAN's `model_segnet_mtan.py`, as used by nash-mtl, CAGrad, FAMO and LibMTL
examples/nyu/segnet_mtan.py): the protocol (B) NYUv2 network.

A shared SegNet trunk (filters 64-128-256-512-512; conv3x3-BN-ReLU blocks; 2x2 max-pooling with
indices and max-unpooling) plus, per task, soft-attention masks at each of the 5 encoder and 5
decoder stages, with shared "block attention" convolutions between stages. Heads ("pred"):
conv3x3 (64->64) then conv1x1 (64->C). Outputs: segmentation logits (nash-mtl applies
log_softmax + NLL, which equals cross-entropy on logits), depth, and L2-normalised normals.
Xavier-normal init for convolutions, BN weight 1 / bias 0.

Parameter split as nash-mtl `SegNetMtan.shared_parameters`: every parameter whose name lacks
"pred" is shared, including the per-task attention modules (so a task's Jacobian row is zero on
other tasks' attention weights). Per-task representations: no rep-grad mode.
Input height and width must be multiples of 32 (5 pooling stages; NYUv2 288x384 is).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtl.models.base import MultiTaskModel
from mtl.errors import InvalidCombination

FILTERS = (64, 128, 256, 512, 512)


def conv_layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def att_layer(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout), nn.Sigmoid(),
    )


def pred_layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.Conv2d(cin, cout, 1))


class SegNetMTAN(MultiTaskModel):
    supports_rep_grad = False

    def __init__(self, tasks: dict[str, int], normalize: Sequence[str] = ("normal",),
                 filters: Sequence[int] = FILTERS):
        """tasks: name -> output channels, e.g. {"segmentation": 13, "depth": 1, "normal": 3}.
        filters: the five stage widths (MTAN: 64-128-256-512-512; smaller only for CPU tests)."""
        super().__init__()
        f = tuple(filters)
        if len(f) != 5:
            raise ValueError(f"SegNet-MTAN needs 5 filter widths, got {f}")
        self.task_names = list(tasks)
        self.normalize = set(normalize) & set(tasks)
        self.encoder_block = nn.ModuleList([conv_layer(3, f[0])] + [conv_layer(f[i], f[i + 1]) for i in range(4)])
        self.decoder_block = nn.ModuleList([conv_layer(f[0], f[0])] + [conv_layer(f[i + 1], f[i]) for i in range(4)])
        self.conv_block_enc = nn.ModuleList(
            [conv_layer(f[0], f[0]), conv_layer(f[1], f[1])]
            + [nn.Sequential(conv_layer(f[i], f[i]), conv_layer(f[i], f[i])) for i in range(2, 5)])
        self.conv_block_dec = nn.ModuleList(
            [conv_layer(f[0], f[0]), conv_layer(f[0], f[0])]
            + [nn.Sequential(conv_layer(f[i], f[i]), conv_layer(f[i], f[i])) for i in range(1, 4)])
        self.encoder_att = nn.ModuleDict({
            t: nn.ModuleList([att_layer(f[0], f[0], f[0])]
                             + [att_layer(2 * f[i + 1], f[i + 1], f[i + 1]) for i in range(4)])
            for t in tasks})
        self.decoder_att = nn.ModuleDict({
            t: nn.ModuleList([att_layer(2 * f[0], f[0], f[0])]
                             + [att_layer(f[i + 1] + f[i], f[i], f[i]) for i in range(4)])
            for t in tasks})
        self.encoder_block_att = nn.ModuleList(
            [conv_layer(f[i], f[i + 1]) for i in range(4)] + [conv_layer(f[4], f[4])])
        self.decoder_block_att = nn.ModuleList(
            [conv_layer(f[0], f[0])] + [conv_layer(f[i + 1], f[i]) for i in range(3)] + [conv_layer(f[4], f[4])])
        self.pred = nn.ModuleDict({t: pred_layer(f[0], c) for t, c in tasks.items()})
        self.down = nn.MaxPool2d(2, 2, return_indices=True)
        self.up = nn.MaxUnpool2d(2, 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x, rep_grad: bool = False, tasks: Sequence[str] | None = None):
        if rep_grad:
            raise InvalidCombination("SegNet-MTAN has one representation per task; rep_grad=True is "
                                     "not supported (use rep_grad=false)")
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"SegNet-MTAN needs height and width divisible by 32, got {tuple(x.shape[-2:])}")
        # shared trunk: enc[i] = (first conv output, block output); dec[i] likewise
        enc, indices, h = [], [], x
        for i in range(5):
            a = self.encoder_block[i](h)
            b = self.conv_block_enc[i](a)
            enc.append((a, b))
            h, idx = self.down(b)
            indices.append(idx)
        ups, dec = [], []
        for i in range(5):
            u = self.up(h, indices[-i - 1])
            a = self.decoder_block[-i - 1](u)
            h = self.conv_block_dec[-i - 1](a)
            ups.append(u)
            dec.append(h)
        out = {}
        for t in (self.task_names if tasks is None else list(tasks)):
            att = None
            for j in range(5):
                inp = enc[j][0] if j == 0 else torch.cat((enc[j][0], att), dim=1)
                att = self.encoder_att[t][j](inp) * enc[j][1]
                att = F.max_pool2d(self.encoder_block_att[j](att), kernel_size=2, stride=2)
            for j in range(5):
                att = F.interpolate(att, scale_factor=2, mode="bilinear", align_corners=True)
                att = self.decoder_block_att[-j - 1](att)
                att = self.decoder_att[t][-j - 1](torch.cat((ups[j], att), dim=1)) * dec[j]
            y = self.pred[t](att)
            if t in self.normalize:
                y = y / y.norm(p=2, dim=1, keepdim=True)
            out[t] = y
        return out, None

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if "pred" not in n]

    def task_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if "pred" in n]
