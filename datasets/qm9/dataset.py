"""The QM9 dataset: PyG's `QM9` items rebuilt from qm9pack (see the package docstring), built once
into a cache under `root` keyed on the loader version, qm9pack's version, the CSVs' sha256s and
the options, and loaded from there."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from mtl.datasets.qm9 import sources
from mtl.datasets.qm9.bonds import (ATOMIC_NUMBER, BOND_SOURCES, FEATURES, H_CUTOFF, HEAVY_CUTOFF, _BondOrders,
                                    all_distance_bonds, collate_graphs, parse_elements)
from mtl.datasets.qm9.lock import build_lock
from mtl.datasets.qm9.sources import INSTALL_HINT, LOADER_VERSION, NUM_MOLECULES, check_sources, default_root, read_csvs
from mtl.datasets.qm9.targets import compute_targets
from mtl.errors import DatasetDamaged, DatasetNotFound, InvalidValue, brief

log = logging.getLogger(__name__)


class QM9(InMemoryDataset):
    """PyG-compatible QM9 built from qm9pack (see module docstring).

    Args:
        root: cache dir (default $QM9_ROOT or <project>/data/qm9); files go to root/processed.
        features: "pyg" (x columns 6-9 zero, as in PyG's file) or "chem" (aromatic and sp/sp2/sp3
            flags from the sanitized SMILES).
        ghost_bonds: keep the distance-rule C-C "ghost bonds" PyG has (True) or use the SMILES
            graph only (False).
        keep_smiles: attach the GDB-17 SMILES as `data.smiles` (PyG's own smiles differ in form).
        limit: build only the first `limit` molecules (tests, CPU demos); separate cache entry.
        progress: tqdm bar while building.
    """

    def __init__(self, root: str | os.PathLike | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, pre_filter: Callable | None = None,
                 features: str = "pyg", ghost_bonds: bool = True, keep_smiles: bool = False,
                 limit: int | None = None, progress: bool = True, force_reload: bool = False):
        if features not in FEATURES:
            raise ValueError(f"QM9 features {features!r} unknown; choose one of {FEATURES}")
        if limit is not None and not 0 < int(limit):
            raise ValueError(f"QM9 limit must be positive, got {limit}")
        self.features, self.ghost_bonds, self.keep_smiles = features, bool(ghost_bonds), bool(keep_smiles)
        self.limit = None if limit is None or int(limit) >= NUM_MOLECULES else int(limit)
        self.progress = progress
        self.source_dir = sources.qm9pack_data_dir()
        self.key = {
            "loader_version": LOADER_VERSION, "qm9pack_version": sources.qm9pack_version(),
            "csv_sha256": check_sources(self.source_dir),
            "options": {"heavy_cutoff": HEAVY_CUTOFF, "h_cutoff": H_CUTOFF, "features": self.features,
                        "ghost_bonds": self.ghost_bonds, "keep_smiles": self.keep_smiles,
                        "limit": self.limit,
                        "pre_transform": None if pre_transform is None else repr(pre_transform),
                        "pre_filter": None if pre_filter is None else repr(pre_filter)},
        }
        self.key_hash = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        from_env = root is None and bool(os.environ.get("QM9_ROOT"))
        root = default_root() if root is None else Path(root)
        for folder in (root, root / "processed"):
            if folder.exists() and not folder.is_dir():
                key = f"QM9_ROOT={root}" if from_env else f"benchmark.build.root={root}"
                raise InvalidValue(key, f"{folder} is a file, but QM9 needs a folder for its cache "
                                        f"(<root>/processed)",
                                   "point it at a folder (it is created if missing) or unset it to use data/qm9")
        # Many array jobs may start on an empty cache at once: one builds (under an exclusive file
        # lock, writing to temporary names renamed into place), the others wait and then load.
        with build_lock(root / "processed", progress):
            super().__init__(str(root), transform, pre_transform, pre_filter, force_reload=force_reload,
                             log=progress)
        self._load_cache()

    def _load_cache(self) -> None:
        """Load the processed files; a damaged one (truncated, random bytes, hand-edited) is an error
        naming it, never silently rebuilt over or half-used."""
        pt, info = (Path(p) for p in self.processed_paths)
        try:
            self.load(str(pt))
            self.build_info = json.loads(info.read_text())
        except Exception as err:  # torch/pickle/zip/json errors all mean an unreadable cache here
            raise DatasetDamaged(
                f"QM9 cache {pt} (or {info.name} beside it) cannot be read ({brief(err)}); delete both "
                f"files (rm {pt} {info}) and re-run to rebuild it from qm9pack (`make data-qm9` rebuilds the "
                f"full data set, ~1.5 min)") from None

    def graphs_location(self) -> tuple[Path, str, str]:
        """(folder, file stem, key) of this storage, for the caches derived from it (`PrecomputedGraphs`)."""
        pt = Path(self.processed_paths[0])
        return pt.parent, pt.stem, self.key_hash

    @property
    def raw_file_names(self) -> list[str]:
        return []  # the raw data is qm9pack's CSVs (checked in __init__), not files under root

    @property
    def processed_file_names(self) -> list[str]:
        stem = f"qm9pack_{self.features}_{self.key_hash}"
        return [stem + ".pt", stem + ".json"]

    def process(self) -> None:
        t0 = time.perf_counter()
        data, slices, info = build(self.source_dir, features=self.features, ghost_bonds=self.ghost_bonds,
                                   keep_smiles=self.keep_smiles, limit=self.limit, progress=self.progress)
        if self.pre_filter is not None or self.pre_transform is not None:
            # PyG's way: per item, filter then transform, then collate.
            items = [separate(data, slices, i) for i in range(len(slices["y"]) - 1)]
            if self.pre_filter is not None:
                items = [d for d in items if self.pre_filter(d)]
            if self.pre_transform is not None:
                items = [self.pre_transform(d) for d in items]
            data, slices = self.collate(items)
        info.update(key=self.key, build_seconds=round(time.perf_counter() - t0, 1))
        # temporary names, then rename: a reader (or a build killed half-way) never sees a torn file;
        # the .json goes last because PyG treats the pair as present only when both exist
        pt, meta = Path(self.processed_paths[0]), Path(self.processed_paths[1])
        tmp = pt.with_name(f"{pt.name}.{os.getpid()}.tmp")
        torch.save((data.to_dict(), slices, type(data)), tmp)
        os.replace(tmp, pt)
        tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, meta)


def separate(data: Data, slices: dict, i: int) -> Data:
    """Item i of a collated (data, slices) pair."""
    out = {}
    for k, v in data.to_dict().items():
        a, b = int(slices[k][i]), int(slices[k][i + 1])
        if k == "edge_index":
            out[k] = v[:, a:b]
        elif isinstance(v, list):
            out[k] = v[a] if b == a + 1 else v[a:b]
        elif k == "idx":
            out[k] = int(v[a])
        else:
            out[k] = v[a:b]
    return Data(**out)


def build(data_dir: Path, features: str = "pyg", ghost_bonds: bool = True, keep_smiles: bool = False,
          limit: int | None = None, progress: bool = True):
    """Builds the collated PyG storage directly (same layout as InMemoryDataset.collate, without
    creating 130k Data objects). Returns (data, slices, build_info)."""
    from tqdm import tqdm

    df = read_csvs(data_dir, limit)
    m = len(df)
    smiles = df["SMILES"].tolist()
    elements = [parse_elements(s) for s in df["Elements"].tolist()]
    n_atoms = np.array([len(e) for e in elements], dtype=np.int64)
    if not np.array_equal(n_atoms, df["N_atoms"].to_numpy()):
        raise DatasetNotFound(f"QM9: Elements and N_atoms disagree in {data_dir}; `{INSTALL_HINT}`.")
    z_all = np.array([ATOMIC_NUMBER[a] for e in elements for a in e], dtype=np.int64)
    # '[[x,y,z],...]' strings: bracket-strip-and-split (json rejects tokens like '0.')
    xyz_all = np.array(",".join(s.replace("[", "").replace("]", "") for s in df["XYZ_Ang"].tolist())
                       .split(","), dtype=np.float64).reshape(-1, 3)
    if len(xyz_all) != len(z_all):
        raise DatasetNotFound(f"QM9: coordinate count differs from atom count in {data_dir}.")
    node_ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    counts = np.zeros((m, 5), dtype=np.int64)
    mol_of_atom = np.repeat(np.arange(m), n_atoms)
    np.add.at(counts, (mol_of_atom, np.searchsorted(np.array([1, 6, 7, 8, 9]), z_all)), 1)
    y = compute_targets(df, counts)

    mol, bi, bj = all_distance_bonds(z_all, xyz_all, node_ptr)
    bond_ptr = np.concatenate([[0], np.cumsum(np.bincount(mol, minlength=m))])
    orders = np.ones(len(mol), dtype=np.int64)
    in_template = np.ones(len(mol), dtype=bool)
    chem_all = np.zeros((len(z_all), 4), dtype=np.float32) if features == "chem" else None
    orders_of = _BondOrders(features)
    sources = dict.fromkeys(BOND_SOURCES, 0)
    fallback_names = []
    index = df["Index"].to_numpy()
    for k in tqdm(range(m), desc="QM9 build", unit="mol", disable=not progress, mininterval=1.0):
        a, b = node_ptr[k], node_ptr[k + 1]
        p, q = bond_ptr[k], bond_ptr[k + 1]
        bonds = np.stack([bi[p:q], bj[p:q]], 1)
        o, chem, source, tmpl = orders_of(smiles[k], z_all[a:b], xyz_all[a:b], bonds)
        orders[p:q], in_template[p:q] = o, tmpl
        if chem is not None:
            chem_all[a:b] = chem
        sources[source] += 1
        if source in ("determine_bond_orders", "all_single"):
            fallback_names.append(f"gdb_{index[k]}:{source}")
    ghost_total = int((~in_template).sum())
    if not ghost_bonds:
        mol, bi, bj, orders = mol[in_template], bi[in_template], bj[in_template], orders[in_template]
    x, edge_index, edge_attr, edge_ptr = collate_graphs(z_all, node_ptr, mol, bi, bj, orders, chem_all)

    store = dict(
        x=torch.from_numpy(x),
        z=torch.from_numpy(z_all),
        pos=torch.from_numpy(np.round(xyz_all, 4).astype(np.float32)),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(edge_attr),
        y=torch.from_numpy(y),
        name=[f"gdb_{i}" for i in index.tolist()],
        idx=torch.from_numpy(index.astype(np.int64) - 1),
    )
    if keep_smiles:
        store["smiles"] = smiles
    node_slice = torch.from_numpy(node_ptr)
    edge_slice = torch.from_numpy(edge_ptr)
    graph_slice = torch.arange(m + 1)
    slices = {"x": node_slice, "z": node_slice.clone(), "pos": node_slice.clone(),
              "edge_index": edge_slice, "edge_attr": edge_slice.clone(), "y": graph_slice,
              "name": graph_slice.clone(), "idx": graph_slice.clone()}
    if keep_smiles:
        slices["smiles"] = graph_slice.clone()
    info = {"molecules": m, "nodes": int(node_ptr[-1]), "directed_edges": int(edge_ptr[-1]),
            "bond_order_sources": sources, "ghost_bonds_found": ghost_total,
            "ghost_bonds_kept": bool(ghost_bonds), "fallbacks": fallback_names,
            "edge_type_counts": {t: int(c) for t, c in zip(("single", "double", "triple", "aromatic"),
                                                           store["edge_attr"].sum(0).long().tolist())}}
    log.info("QM9 build: %s", {k: v for k, v in info.items() if k != "fallbacks"})
    return Data(**store), slices, info


def missing_indices(dataset: QM9) -> np.ndarray:
    """0-based QM9 indices (of the 133,885) absent from `dataset` (PyG skips 3,054)."""
    idx = dataset._data.idx.numpy()
    top = idx.max() + 1 if dataset.limit is not None else 133_885
    return np.setdiff1d(np.arange(top), idx)
