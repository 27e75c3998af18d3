"""A QM9-format fixture: random molecules in the same storage format as `QM9`'s cache, written
and loaded without qm9pack or RDKit (tests, GPU smoke runs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from mtl.datasets.qm9.bonds import collate_graphs, distance_bonds
from mtl.datasets.qm9.sources import sha256
from mtl.datasets.qm9.targets import TARGETS
from mtl.errors import DatasetNotFound

FIXTURE_FILE = "qm9_fixture.pt"


class QM9File(InMemoryDataset):
    """A collated QM9-format storage file (as `write_fixture` writes it): the same fields as `QM9`,
    loaded without qm9pack. `limit` is the number of molecules, which are the first positions of
    the LibMTL split permutation's index space (so split rules apply as with `QM9(limit=n)`)."""

    def __init__(self, path: str | os.PathLike, transform: Callable | None = None):
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFound(f"QM9 fixture file {path} does not exist; write one with "
                                  f"mtl.datasets.qm9.write_fixture(<dir>)")
        super().__init__(None, transform, log=False)
        self.load(str(path))
        self.limit = len(self)
        self.path = path

    def graphs_location(self) -> tuple[Path, str, str]:
        """(folder, file stem, key) for the caches derived from this file: its folder, its name and its
        sha256 (an edited fixture gets new derived files)."""
        return self.path.parent, self.path.stem, sha256(self.path)[:16]


def write_fixture(root: str | os.PathLike, n: int = 300, seed: int = 0, max_atoms: int = 9) -> Path:
    """Write `n` random molecules (2..max_atoms atoms of H C N O F, random 3-D positions, bonds by
    the distance rule, random targets) as a collated QM9-format file under `root`; returns its path
    (pass it as the QM9 benchmark's `data_file`). For tests and GPU smoke runs on machines without
    qm9pack/RDKit; the numbers mean nothing chemically."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = int(rng.integers(2, max_atoms + 1))
        z = rng.choice(np.array([1, 6, 7, 8, 9]), size=k, p=[0.45, 0.35, 0.08, 0.1, 0.02])
        pos = rng.normal(scale=1.0, size=(k, 3))
        bonds = distance_bonds(z, pos)
        orders = rng.integers(1, 4, size=len(bonds))
        x, edge_index, edge_attr, _ = collate_graphs(
            z, np.array([0, k]), np.zeros(len(bonds), dtype=np.int64), bonds[:, 0], bonds[:, 1], orders, None)
        items.append(Data(x=torch.from_numpy(x), z=torch.from_numpy(z.astype(np.int64)),
                          pos=torch.from_numpy(pos.astype(np.float32)), edge_index=torch.from_numpy(edge_index),
                          edge_attr=torch.from_numpy(edge_attr),
                          y=torch.from_numpy(rng.normal(size=(1, len(TARGETS))).astype(np.float32)),
                          name=f"fixture_{i}", idx=torch.tensor([i])))
    path = Path(root) / FIXTURE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    InMemoryDataset.save(items, str(path))
    return path
