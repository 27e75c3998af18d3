"""Tiny data sets in each benchmark's real on-disk format, for tests and smoke runs:
`write_fixture(name, root, ...)` writes one data set's fixture (the writer lives next to its loader).
`mtl.benchmarks.fixtures.tiny_overrides` turns a registered benchmark into a tiny run on one."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mtl.errors import UnknownName

# data set name -> (module in this package that defines write_fixture(root, ...), fixed keyword args)
WRITERS: dict[str, tuple[str, dict[str, Any]]] = {
    "nyuv2": ("mtl.datasets.nyuv2", {}),
    "cityscapes": ("mtl.datasets.cityscapes", {}),
    "qm9": ("mtl.datasets.qm9", {}),
    "office31": ("mtl.datasets.office", {"dataset": "office31"}),
    "officehome": ("mtl.datasets.office", {"dataset": "officehome"}),
}


def write_fixture(name: str, root: str | Path, **kw) -> Path:
    """Write the fixture of data set `name` under `root`; kwargs go to the module's writer. Returns
    what the writer returns (the data root, the QM9 file, or Office's split-list directory)."""
    if name not in WRITERS:
        raise UnknownName("write_fixture(name)", f"no fixture writer for {name!r}", f"choose one of {', '.join(sorted(WRITERS))}")
    module, fixed = WRITERS[name]
    return importlib.import_module(module).write_fixture(root, **fixed, **kw)
