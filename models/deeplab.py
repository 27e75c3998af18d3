"""DeepLabV3+ ASPP head (LibMTL examples/nyu/aspp.py = LibMTL.model.decoder.DeepLabHead).

ASPP: a 1x1 branch, three 3x3 atrous branches (rates 12, 24, 36) and an image-pooling branch, each
256 channels with BN + ReLU; concatenated, projected 1x1 to 256 (BN, ReLU, Dropout 0.5). Then a
3x3 conv 256 -> 256 (BN, ReLU) and a 1x1 conv to the task's channels. The output is upsampled
bilinearly (align_corners=True) to `out_size`, the input image size, as LibMTL's
`process_preds` does after the decoder.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

RATES = (12, 24, 36)


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> list[nn.Module]:
    pad = 0 if k == 1 else dilation
    return [nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ASPPPooling(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(cin, cout))

    def forward(self, x):
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin: int, rates: Sequence[int] = RATES, cout: int = 256):
        super().__init__()
        branches = [nn.Sequential(*_conv_bn_relu(cin, cout))]
        branches += [nn.Sequential(*_conv_bn_relu(cin, cout, 3, r)) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * cout, cout), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))


class DeepLabHead(nn.Module):
    """Task head: ASPP -> 3x3 conv -> 1x1 conv -> bilinear upsampling to `out_size`."""

    def __init__(self, in_channels: int, out_channels: int, out_size: Sequence[int] | None = None,
                 rates: Sequence[int] = RATES, mid_channels: int = 256):
        """mid_channels: ASPP / conv width, 256 in LibMTL (smaller only for CPU tests)."""
        super().__init__()
        self.body = nn.Sequential(
            ASPP(in_channels, rates, mid_channels),
            *_conv_bn_relu(mid_channels, mid_channels, 3),
            nn.Conv2d(mid_channels, out_channels, 1),
        )
        self.out_size = tuple(out_size) if out_size is not None else None

    def forward(self, x):
        y = self.body(x)
        if self.out_size is None:
            return y
        return F.interpolate(y, self.out_size, mode="bilinear", align_corners=True)
