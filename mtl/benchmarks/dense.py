"""Shared benchmark class of the dense-prediction benchmarks (NYUv2, Cityscapes).

Builds loaders over `mtl.datasets.dense` data, the chosen architecture (HPS / MTAN / Cross-stitch over
a dilated ResNet-50 with DeepLabV3+ heads, or SegNet-MTAN), per-task losses and split metrics
(`mtl.benchmarks.dense_metrics`). Protocol choices (optimizer, schedule, selection, reference)
live in the YAML configs.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtl.datasets.dense import DatasetFormatError, DenseDataset, DenseLayout
from mtl.models.base import HPS, MultiTaskModel, count_parameters
from mtl.models.cross_stitch import CrossStitch
from mtl.models.deeplab import DeepLabHead
from mtl.models.mtan import MTAN
from mtl.models.resnet import ResNetEncoder
from mtl.models.segnet_mtan import FILTERS, SegNetMTAN
from mtl.benchmarks.base import Benchmark, MetricSpec, TaskSpec, epoch_seed, stack_task_losses, task_indices
from mtl.benchmarks import dense_metrics as dm

ARCHS = ("hps", "mtan", "cross_stitch", "segnet_mtan")

TASK_SPECS = {
    "segmentation": TaskSpec("segmentation", (MetricSpec("mIoU", True, "%"), MetricSpec("PAcc", True, "%"))),
    # absolute error in the data's depth unit (NYUv2: metres; Cityscapes: inverse depth), relative error
    "depth": TaskSpec("depth", (MetricSpec("AErr", False), MetricSpec("RErr", False))),
    "normal": TaskSpec("normal", (MetricSpec("Mean", False, "deg"), MetricSpec("MED", False, "deg"),
                                  MetricSpec("Within11.25", True, "%"), MetricSpec("Within22.5", True, "%"),
                                  MetricSpec("Within30", True, "%"))),
}


def dense_tasks(names: Sequence[str]) -> list[TaskSpec]:
    unknown = [t for t in names if t not in TASK_SPECS]
    if unknown:
        raise ValueError(f"unknown dense tasks {unknown}; known: {list(TASK_SPECS)}")
    return [TASK_SPECS[t] for t in names]

LOSSES = {"segmentation": dm.segmentation_loss, "depth": dm.depth_loss, "normal": dm.normal_loss}


def build_model(arch: str, out_channels: dict[str, int], image_size: Sequence[int], *,
                backbone: str = "resnet50", dilated: bool = True, pretrained: bool = True,
                head_channels: int = 256, segnet_filters: Sequence[int] = FILTERS) -> MultiTaskModel:
    """The multi-task network `arch` for tasks {name: output channels} at `image_size`."""
    if arch == "segnet_mtan":
        return SegNetMTAN(out_channels, filters=segnet_filters)
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    make_encoder = partial(ResNetEncoder, backbone, dilated=dilated, pretrained=pretrained)
    enc = make_encoder() if arch != "cross_stitch" else None
    dim = enc.feature_dim if enc is not None else make_encoder().feature_dim
    heads = {t: DeepLabHead(dim, c, out_size=image_size, mid_channels=head_channels)
             for t, c in out_channels.items()}
    if arch == "hps":
        return HPS(enc, heads)
    if arch == "mtan":
        return MTAN(enc, heads)
    return CrossStitch(make_encoder, heads)


class DenseBenchmark(Benchmark):
    """Single-input dense prediction: one image, one target map per task."""

    def __init__(self, name: str, layout: DenseLayout, tasks: Sequence[str], *, root: str,
                 arch: str = "hps", backbone: str = "resnet50", dilated: bool = True,
                 pretrained: bool = True, head_channels: int = 256,
                 segnet_filters: Sequence[int] = FILTERS, train_batch_size: int = 8, test_batch_size: int = 8,
                 aug: bool = False, aug_scales: Sequence[float] = (1.0, 1.2, 1.5),
                 pooling: str = "pixel", num_workers: int = 2,
                 image_size: Sequence[int] | None = None, split_sizes: dict[str, int] | None = None):
        if pooling not in dm.POOLINGS:
            raise ValueError(f"pooling must be one of {dm.POOLINGS}, got {pooling!r}")
        unknown = [t for t in tasks if t not in TASK_SPECS or t not in layout.modalities]
        if unknown:
            raise ValueError(f"{name}: unknown tasks {unknown}")
        self.name = name
        self.layout = layout
        self.tasks = dense_tasks(tasks)
        self.pooling = pooling
        self.num_classes = layout.num_classes
        root_path = Path(root).expanduser()
        sets = {
            "train": DenseDataset(layout, root_path, "train", augment=aug, scales=aug_scales, image_size=image_size),
            "test": DenseDataset(layout, root_path, "val", image_size=image_size),
        }
        if split_sizes is not None:  # the published sizes; tests on fixtures pass null
            for split, folder in (("train", "train"), ("test", "val")):
                want = split_sizes[folder]
                if len(sets[split]) != want:
                    raise DatasetFormatError(f"{root_path / folder}: {len(sets[split])} samples, "
                                          f"the published {layout.title} split has {want}")
        size = tuple(image_size) if image_size is not None else tuple(sets["test"][0][0].shape[-2:])
        out_channels = {"segmentation": layout.num_classes, "depth": 1, "normal": 3}
        self.model = build_model(arch, {t: out_channels[t] for t in tasks}, size,
                                 backbone=backbone, dilated=dilated, pretrained=pretrained,
                                 head_channels=head_channels, segnet_filters=segnet_filters)
        common = dict(num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)
        self.loaders = {
            # LibMTL examples: shuffle, drop_last=True for training; test in order
            "train": DataLoader(sets["train"], batch_size=train_batch_size, shuffle=True, drop_last=True,
                                generator=torch.Generator(), **common),
            "test": DataLoader(sets["test"], batch_size=test_batch_size, shuffle=False, **common),
        }

    # -- training --------------------------------------------------------------------------
    def train_batches(self, epoch: int, seed: int):
        # augmentation draws depend on (seed, epoch, index) only, like the shuffle order
        self.loaders["train"].dataset.aug_seed = epoch_seed(seed, epoch)
        return super().train_batches(epoch, seed)

    def compute_losses(self, model, batch, rep_grad: bool = False, tasks=None):
        image, targets = batch
        idx = task_indices(tasks, len(self.tasks))
        names = [self.tasks[i].name for i in idx]
        preds, rep = model(image, rep_grad=rep_grad, tasks=names)
        values = {i: LOSSES[n](preds[n], targets[n]) for i, n in zip(idx, names)}
        return stack_task_losses(values, len(self.tasks)), rep

    # -- evaluation ------------------------------------------------------------------------
    def meters(self) -> dict[str, Any]:
        make = {"segmentation": lambda: dm.SegmentationMeter(self.num_classes),
                "depth": lambda: dm.DepthMeter(self.pooling),
                "normal": lambda: dm.NormalMeter(self.pooling)}
        return {t.name: make[t.name]() for t in self.tasks}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, device: torch.device):
        was_training = model.training
        model.eval()
        meters = self.meters()
        try:
            for image, targets in self.loaders[split]:
                preds, _ = model(image.to(device))
                for name, meter in meters.items():
                    meter.update(preds[name], targets[name].to(device))
        finally:
            model.train(was_training)
        return {name: meter.compute() for name, meter in meters.items()}

    def parameter_counts(self) -> dict[str, int]:
        """Shared / task-specific / total parameter counts of the model (for reports)."""
        shared = count_parameters(self.model.shared_parameters())
        task = count_parameters(self.model.task_parameters())
        return {"shared": shared, "task": task, "total": count_parameters(list(self.model.parameters()))}

