"""Tiny data sets in each benchmark's real on-disk format, for tests and smoke runs.

`write_fixture(name, root, ...)` dispatches to the data set module's own `write_fixture`, so the
writer lives next to the loader it must satisfy.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from mtl.errors import UnknownName

# benchmark data name -> module in this package that defines write_fixture(root, ...)
WRITERS = {
    "nyuv2": "datasets.nyuv2",
    "cityscapes": "datasets.cityscapes",
    "qm9": "datasets.qm9",
}


def write_fixture(name: str, root: str | Path, **kw) -> Path:
    """Write the fixture of data set `name` under `root`; kwargs go to the module's writer."""
    if name not in WRITERS:
        raise UnknownName("write_fixture(name)", f"no fixture writer for {name!r}", f"choose one of {', '.join(sorted(WRITERS))}")
    return importlib.import_module(WRITERS[name]).write_fixture(root, **kw)
