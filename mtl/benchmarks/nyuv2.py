"""`nyuv2` (DeepLabV3+, LibMTL examples/nyu/main.py) and `nyuv2_segnet` (SegNet-MTAN,
main_segnet.py / nash-mtl): 13-class segmentation, depth and surface normals on MTAN's NYUv2.

Data: `mtl.datasets.nyuv2` (795 train / 654 test at 288x384; `make data-nyuv2`). Tasks and metrics:
segmentation (mIoU %, PAcc %), depth (AErr, RErr), normal (Mean, MED degrees; Within11.25/22.5/30 %).
"""
from __future__ import annotations

from mtl.datasets.nyuv2 import LAYOUT
from mtl.benchmarks.base import TaskSpec
from mtl.benchmarks.dense import DenseBenchmark, dense_tasks

TASKS = ("segmentation", "depth", "normal")


def tasks(**_) -> list[TaskSpec]:
    return dense_tasks(TASKS)


def build(root: str = LAYOUT.default_root, name: str = "nyuv2", **cfg) -> DenseBenchmark:
    """kwargs: arch (hps|mtan|cross_stitch|segnet_mtan), backbone, dilated, pretrained,
    train_batch_size, test_batch_size, aug, aug_scales, pooling (pixel|batch), num_workers,
    image_size, split_sizes (see configs/benchmark/nyuv2*.yaml)."""
    return DenseBenchmark(name, LAYOUT, TASKS, root=root, **cfg)
