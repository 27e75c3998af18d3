"""QM9 rebuilt offline from the `qm9pack` PyPI package, field-for-field like PyG's `QM9`.

Why: PyG downloads QM9 at run time (no network here) and the MTL references (LibMTL/DB-MTL,
nash-mtl) index molecules by PyG's order. qm9pack 1.0.3 holds the same 130,831 molecules in the
same order with all 19 raw targets and full-precision geometry, so we rebuild PyG's items from it:
x [N,11], z, pos (rounded to 4 decimals, as PyG's SDF), edge_index/edge_attr (bonds by a distance
rule that reproduces PyG's 4,883,516 directed edges, bond orders from the kekulized GDB-17
SMILES), y [1,19] in PyG units, name, idx. RDKit is needed only while building; the result is
cached under `root` keyed on loader version, qm9pack version, CSV sha256s and options.
Recipe and evidence: the project's QM9 notes (docs/benchmarks.md, "QM9").

Known differences from PyG's file: per-bond Kekulé orders in ~5.9k benzene-like rings and a
few charge-separated (OEChem) forms may differ; everything else is reproduced.

The package by concern (the names below are its public face; `mtl.datasets.qm9.<name>` stays):

    sources.py   qm9pack's CSVs: located, checked (sha256), read; the cache folder
    targets.py   the 19 targets in PyG's order and units
    bonds.py     bond perception (distance rule, bond orders from SMILES) and graph collation
    dataset.py   `QM9`: the cached, PyG-compatible dataset and its build
    lock.py      the build lock shared by concurrent jobs
    fixture.py   `write_fixture` / `QM9File`: random molecules in the same format, no qm9pack
    graphs.py    `PrecomputedGraphs`: the model's input graphs computed once and cached
    loader.py    `batch_loader`: batches gathered at once from precomputed graphs
"""
from __future__ import annotations

from pathlib import Path

from mtl.datasets.qm9.bonds import (ATOMIC_NUMBER, BOND_SOURCES, ELEMENTS, FEATURES, H_CUTOFF, HEAVY_CUTOFF,
                                    all_distance_bonds, collate_graphs, distance_bonds, parse_elements)
from mtl.datasets.qm9.dataset import QM9, build, missing_indices, separate
from mtl.datasets.qm9.fixture import FIXTURE_FILE, QM9File, write_fixture
from mtl.datasets.qm9.graphs import GRAPHS, GRAPHS_VERSION, PrecomputedGraphs
from mtl.datasets.qm9.loader import GraphBatches, batch_loader
from mtl.datasets.qm9.lock import build_lock
from mtl.datasets.qm9.sources import (CSV_SHA256, INSTALL_HINT, LOADER_VERSION, NUM_MOLECULES, PART_FILES,
                                      PART_ROWS, QM9PACK_VERSION, check_sources, default_root, qm9pack_data_dir,
                                      qm9pack_version, read_csvs, sha256)
from mtl.datasets.qm9.targets import ATOMREF, HAR2EV, HARTREE2KCALMOL, KCALMOL2EV, TARGETS, compute_targets


def prepare(root: str | None = None, features: str = "pyg", ghost_bonds: bool = True, limit: int | None = None,
            progress: bool = True, graph: str = "complete", precompute: bool = True) -> Path:
    """Build the QM9 cache (and its precomputed graphs) if absent, before jobs start;
    returns its folder."""
    ds = QM9(root=root, features=features, ghost_bonds=ghost_bonds, limit=limit, progress=progress)
    if precompute:
        PrecomputedGraphs(ds, graph, progress=progress)
    return Path(ds.processed_dir)


__all__ = [
    "ATOMIC_NUMBER", "ATOMREF", "BOND_SOURCES", "CSV_SHA256", "ELEMENTS", "FEATURES", "FIXTURE_FILE", "GRAPHS",
    "GRAPHS_VERSION", "GraphBatches", "HAR2EV", "HARTREE2KCALMOL", "H_CUTOFF", "HEAVY_CUTOFF", "INSTALL_HINT",
    "KCALMOL2EV", "LOADER_VERSION", "NUM_MOLECULES", "PART_FILES", "PART_ROWS", "PrecomputedGraphs", "QM9",
    "QM9File", "QM9PACK_VERSION", "TARGETS", "all_distance_bonds", "batch_loader", "build", "build_lock",
    "check_sources", "collate_graphs", "compute_targets", "default_root", "distance_bonds", "missing_indices",
    "parse_elements", "prepare", "qm9pack_data_dir", "qm9pack_version", "read_csvs", "separate", "sha256",
    "write_fixture",
]
