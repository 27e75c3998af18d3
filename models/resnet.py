"""ResNet encoders from torchvision, optionally dilated (output stride 8) and ImageNet-initialised.

`resnet_encoder("resnet50", dilated=True)` is LibMTL's `resnet_dilated('resnet50')`: layer3 and
layer4 keep stride 1 with dilation 2 and 4 (torchvision's `replace_stride_with_dilation=[False,
True, True]` produces the same convolutions as LibMTL's `_nostride_dilate`), so a 288x384 input
gives a 2048x36x48 feature map. ImageNet weights are torchvision's IMAGENET1K_V1, the same files
as the legacy URLs LibMTL loads. They come through torchvision's weights API and its cache
(`$TORCH_HOME/hub/checkpoints`); without network access and without a cached file the loader
stops with the exact path to put the file at.
"""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from mtl.errors import MTLError

NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "tiny")
# "tiny": torchvision BasicBlocks, two per stage (MTAN needs >= 2), widths 8-16-32-64. For tests and smoke runs on
# CPU only (same interface as the real encoders); no published result uses it.
TINY_WIDTHS = (8, 16, 32, 64)


class WeightsUnavailable(MTLError):
    """Pretrained weights could not be downloaded and are not in the local cache."""


def weights_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 weights of `name` (from the cache, else downloaded)."""
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    path = weights_cache_path(weights.url)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise WeightsUnavailable(
            f"ImageNet weights of {name} are not cached at {path} and could not be downloaded "
            f"({err}). Download {weights.url} on a machine with internet access and copy it to "
            f"{path} (or set TORCH_HOME to a folder whose hub/checkpoints/ holds it), or run with "
            f"benchmark.build.pretrained=false (random init; not the published protocol)."
        ) from err


class ResNetEncoder(nn.Module):
    """A torchvision ResNet without avgpool and fc; forward returns the layer4 feature map."""

    def __init__(self, name: str = "resnet50", *, dilated: bool = False, pretrained: bool = False):
        super().__init__()
        if name not in NAMES:
            raise ValueError(f"unknown ResNet {name!r}; choose one of {NAMES}")
        kwargs = {}
        if dilated:
            if name in ("resnet18", "resnet34", "tiny"):
                raise ValueError(f"{name} uses BasicBlocks, which torchvision cannot dilate; use resnet50+")
            kwargs["replace_stride_with_dilation"] = [False, True, True]
        if name == "tiny":
            if pretrained:
                raise ValueError("the tiny test encoder has no pretrained weights")
            net = _tiny_resnet()
        else:
            net = getattr(torchvision.models, name)(weights=None, **kwargs)
        if pretrained:
            net.load_state_dict(imagenet_state_dict(name))
        self.name, self.dilated = name, dilated
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_dim = net.fc.in_features
        self.expansion = self.layer1[0].expansion
        self.channels = [_out_channels(layer) for layer in self.layers]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    @property
    def layers(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels


def _tiny_resnet() -> torchvision.models.ResNet:
    from torchvision.models.resnet import BasicBlock

    net = torchvision.models.ResNet(BasicBlock, [2, 2, 2, 2])
    net.conv1 = nn.Conv2d(3, TINY_WIDTHS[0], 7, 2, 3, bias=False)
    net.bn1 = nn.BatchNorm2d(TINY_WIDTHS[0])
    cin = TINY_WIDTHS[0]
    for i, w in enumerate(TINY_WIDTHS):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or cin != w:
            down = nn.Sequential(nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
        setattr(net, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, stride, down), BasicBlock(w, w)))
        cin = w
    net.fc = nn.Linear(cin, 1)
    return net


def resnet_encoder(name: str = "resnet50", dilated: bool = False, pretrained: bool = False) -> ResNetEncoder:
    return ResNetEncoder(name, dilated=dilated, pretrained=pretrained)
