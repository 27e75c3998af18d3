"""The overrides that make every registered benchmark tiny, for tests and smoke runs:
`tiny_overrides(benchmark, root)` writes the benchmark's fixture under `root` (in its real on-disk
format, `mtl.datasets.fixtures.write_fixture`) and returns the config overrides that run it there.

It is keyed by the benchmark's module (`build._target_`), so a new YAML of an existing module is
covered at once; a new module needs one entry in TINY (tests/test_benchmarks.py says so).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from mtl.benchmarks import spec
from mtl.datasets.fixtures import write_fixture
from mtl.errors import UnknownName


# ---- tiny variants of the registered benchmarks ------------------------------------------------
# Each entry: (build block of the composed config, fixture root) -> `benchmark.build` overrides
# (key=value without the prefix). Sizes give 2 training steps and finish in about a second on a CPU.
def _synthetic(build: dict, root: Path) -> list[str]:
    return ["n_train=128", "n_val=64", "n_test=64"]  # batch 64: 2 steps


def _toy(build: dict, root: Path) -> list[str]:
    return ["steps_per_epoch=2"]


def _qm9(build: dict, root: Path) -> list[str]:
    path = write_fixture("qm9", root / "qm9", n=300)  # >= 20 val and test molecules under either split rule
    return [f"data_file={path}", "subset={train:32,val:16,test:16}", "batch_size=16", "eval_batch_size=16",
            "progress=false"]


def _dense(data: str, **kw) -> Callable[[dict, Path], list[str]]:
    """NYUv2 / Cityscapes (.npy layout) at 32x64 with a tiny ResNet or narrow SegNet-MTAN."""

    def overrides(build: dict, root: Path) -> list[str]:
        path = write_fixture(data, root / data, n_train=4, n_val=2, height=32, width=64, **kw)
        out = [f"root={path}", "image_size=null", "split_sizes=null", "num_workers=0", "train_batch_size=2",
               "test_batch_size=2"]
        if build.get("arch") == "segnet_mtan":
            return out + ["segnet_filters=[4,8,8,16,16]"]
        return out + ["pretrained=false", "backbone=tiny", "dilated=false", "head_channels=8"]

    return overrides


def _office(build: dict, root: Path) -> list[str]:
    """Office-31 / Office-Home: 2 classes, (2 train, 1 val, 1 test) JPEGs per class and domain, 32x32."""
    dataset = build["dataset"]
    n_domains = len(importlib.import_module("mtl.datasets.office").spec(dataset).domains)
    lists = write_fixture(dataset, root / dataset, num_classes=2, per_class=[(2, 1, 1)] * n_domains)
    return [f"root={root / dataset}", f"splits_dir={lists}", "image_size=32", "batch_size=2", "eval_batch_size=2",
            "num_workers=0", "pretrained=false"]


# benchmark module (the `build._target_` module of its YAML) -> its tiny overrides
TINY: dict[str, Callable[[dict, Path], list[str]]] = {
    "mtl.benchmarks.synthetic": _synthetic,
    "mtl.benchmarks.toy": _toy,
    "mtl.benchmarks.qm9": _qm9,
    "mtl.benchmarks.nyuv2": _dense("nyuv2"),
    "mtl.benchmarks.cityscapes": _dense("cityscapes", label_folder="label_7"),
    "mtl.benchmarks.office": _office,
}


def tiny_overrides(benchmark: str, root: str | Path) -> list[str]:
    """Write benchmark `benchmark`'s fixture under `root` (if it reads data) and return the overrides
    that run it there at toy size: `benchmark=<name>` and `benchmark.build.*` keys (small images,
    tiny networks, pretrained=false, batches of 2-64, the data root). Trainer keys (epochs, steps)
    are the caller's."""
    s = spec(benchmark)
    make = TINY.get(s.module)
    if make is None:
        raise UnknownName(f"benchmark {benchmark!r}", f"its module {s.module} has no tiny fixture",
                          "add an entry to TINY in mtl/benchmarks/fixtures.py (a write_fixture next to the loader, "
                          "registered in WRITERS, and the build overrides that make the benchmark tiny)")
    return [f"benchmark={benchmark}", *(f"benchmark.build.{o}" for o in make(s.config["build"], Path(root)))]
