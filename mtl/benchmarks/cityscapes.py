"""`cityscapes` (DeepLabV3+, LibMTL examples/cityscapes/main.py): 7-class segmentation and
inverse depth on MTAN's 128x256 Cityscapes.

Data: `mtl.datasets.cityscapes` (2975 train / 500 test; `make data-cityscapes`). Tasks and metrics:
segmentation (mIoU %, PAcc %), depth (AErr, RErr on inverse depth, hence RErr of about 40).
"""
from __future__ import annotations

from mtl.datasets.cityscapes import LAYOUT
from mtl.benchmarks.base import TaskSpec
from mtl.benchmarks.dense import DenseBenchmark, dense_tasks

TASKS = ("segmentation", "depth")


def tasks(**_) -> list[TaskSpec]:
    return dense_tasks(TASKS)


def build(root: str = LAYOUT.default_root, name: str = "cityscapes", **cfg) -> DenseBenchmark:
    """kwargs as `mtl.benchmarks.nyuv2.build` (see configs/benchmark/cityscapes.yaml)."""
    return DenseBenchmark(name, LAYOUT, TASKS, root=root, **cfg)
