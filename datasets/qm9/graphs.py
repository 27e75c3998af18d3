"""The model's input graphs, precomputed once.

The MPNN of the references sees each molecule through PyG's `Complete()` (every ordered atom pair
i != j, row-major, bonded pairs keeping their 4-d bond one-hot, the others zeros) and
`Distance(norm=False)` (the Euclidean distance appended as a 5th feature), applied per molecule
per epoch. `PrecomputedGraphs` computes the same edges once, vectorised over all molecules, and
caches them next to the source storage, so loading a batch is slicing and collation only.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset

from mtl.datasets.qm9.lock import build_lock
from mtl.errors import DatasetDamaged, brief

GRAPHS = ("complete", "bonds")
GRAPHS_VERSION = "1"


def _graph_edges(edge_index: torch.Tensor, edge_slice: torch.Tensor, node_slice: torch.Tensor,
                 pos: torch.Tensor, graph: str, chunk: int = 1 << 20):
    """The transformed edges of every molecule of a collated storage.

    Returns (edge_index [2, E] local node indices, source [E] index of the stored bond whose
    attributes the edge carries or -1 for none, dist [E] float32, edge_slice [M+1])."""
    if graph not in GRAPHS:
        raise ValueError(f"qm9: graph={graph!r} unknown; choose one of {GRAPHS}")
    sizes = node_slice.diff()
    m = len(sizes)
    if graph == "bonds":
        out_index, source, out_slice = edge_index.clone(), torch.arange(edge_index.shape[1]), edge_slice.clone()
    else:
        per_mol = sizes * (sizes - 1)
        out_slice = torch.cat([torch.zeros(1, dtype=torch.long), per_mol.cumsum(0)])
        total = int(out_slice[-1])
        out_index = torch.empty((2, total), dtype=torch.long)
        for n in sizes.unique().tolist():
            mols = torch.nonzero(sizes == n).flatten()
            if n < 2:
                continue
            ar = torch.arange(n)
            row, col = ar.repeat_interleave(n), ar.repeat(n)  # Complete(): row-major pairs ...
            keep = row != col                                 # ... without self loops
            tmpl = torch.stack([row[keep], col[keep]])        # [2, n(n-1)]
            where = (out_slice[mols][:, None] + torch.arange(n * (n - 1))[None, :]).flatten()
            out_index[:, where] = tmpl.repeat(1, len(mols))
        # each stored bond (i, j) of molecule k lands at position i*(n-1) + j - (j > i) of k's block;
        # self loops are dropped, as Complete's remove_self_loops does
        source = torch.full((total,), -1, dtype=torch.long)
        mol = torch.repeat_interleave(torch.arange(m), edge_slice.diff())
        i, j = edge_index
        n = sizes[mol]
        ok = i != j
        at = out_slice[mol] + i * (n - 1) + j - (j > i).long()
        at, k = at[ok], torch.nonzero(ok).flatten()
        if len(at.unique()) != len(at):
            raise ValueError("qm9: the stored graph has duplicate bonds; Complete() would keep an arbitrary "
                             "one of their attributes, so it cannot be precomputed (use precompute=false)")
        source[at] = k
    # Distance(norm=False): torch.norm(pos[col] - pos[row], p=2, dim=-1), in float32 like the transform
    node_off = torch.repeat_interleave(node_slice[:-1], out_slice.diff())
    dist = torch.empty(out_index.shape[1], dtype=pos.dtype)
    for a in range(0, len(dist), chunk):
        r = out_index[0, a:a + chunk] + node_off[a:a + chunk]
        c = out_index[1, a:a + chunk] + node_off[a:a + chunk]
        dist[a:a + chunk] = torch.norm(pos[c] - pos[r], p=2, dim=-1)
    return out_index, source, dist, out_slice


class PrecomputedGraphs(InMemoryDataset):
    """A QM9 storage (`QM9` or `QM9File`) whose items carry the model's input graph already: the
    same x, z, pos, y, name, idx tensors (shared, not copied) with edge_index/edge_attr replaced by
    those of `reference_transform(graph)` (`mtl.benchmarks.qm9`), bit for bit. The transformed edges
    are cached in `<source stem>_<graph>_<key>.pt` beside the source storage, built once under the
    source's build lock; storage there is compact (int16 local indices, int32 bond ids, float32
    distances) and expanded to the usual int64 / [E, 5] float32 tensors when loaded."""

    def __init__(self, source: InMemoryDataset, graph: str = "complete", progress: bool = True):
        if graph not in GRAPHS:
            raise ValueError(f"qm9: graph={graph!r} unknown; choose one of {GRAPHS}")
        super().__init__(None, log=False)
        self.source, self.graph, self.limit = source, graph, source.limit
        folder, stem, source_key = source.graphs_location()
        self.key = {"version": GRAPHS_VERSION, "graph": graph, "source": source_key}
        key_hash = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]
        self.path = Path(folder) / f"{stem}_{graph}_{key_hash}.pt"
        with build_lock(Path(folder), progress):
            if not self.path.is_file():
                self._build(progress)
        self._load()

    def _build(self, progress: bool) -> None:
        t0 = time.perf_counter()
        data, slices = self.source._data, self.source.slices
        edge_index, source, dist, edge_slice = _graph_edges(
            data.edge_index, slices["edge_index"], slices["pos"], data.pos, self.graph)
        small = int(slices["pos"].diff().max()) < 2 ** 15 and (len(source) == 0 or int(source.max()) < 2 ** 31)
        store = {"key": self.key, "edge_slice": edge_slice, "dist": dist,
                 "edge_index": edge_index.to(torch.int16 if small else torch.long),
                 "source": source.to(torch.int32 if small else torch.long),
                 "build_seconds": round(time.perf_counter() - t0, 2)}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        torch.save(store, tmp)
        os.replace(tmp, self.path)  # atomic: a reader never sees a torn file
        if progress:
            print(f"[qm9] precomputed {self.graph} graphs ({edge_slice[-1]:,} edges, "
                  f"{time.perf_counter() - t0:.1f} s) -> {self.path}", flush=True)

    def _load(self) -> None:
        data, slices = self.source._data, self.source.slices
        try:
            store = torch.load(self.path, weights_only=True)
            edge_slice = store["edge_slice"]
            ok = (store["key"] == self.key and len(edge_slice) == len(slices["pos"])
                  and store["edge_index"].shape == (2, int(edge_slice[-1]))
                  and store["source"].shape == store["dist"].shape == (int(edge_slice[-1]),))
            if not ok:
                raise ValueError("contents do not match the source storage")
        except Exception as err:  # torch/pickle/zip errors or wrong contents: an unusable cache file
            raise DatasetDamaged(
                f"QM9 precomputed-graph cache {self.path} cannot be used ({brief(err)}); delete it "
                f"(rm {self.path}) and re-run to rebuild it (seconds; ~20 s on 2 cores for "
                f"the full complete graphs), or set benchmark.build.precompute=false") from None
        source = store["source"].long()
        attr = data.edge_attr
        edge_attr = attr.new_zeros((len(source), attr.shape[1] + 1))
        has = source >= 0
        edge_attr[has, :-1] = attr[source[has]]
        edge_attr[:, -1] = store["dist"].to(attr.dtype)
        fields = {k: v for k, v in data.to_dict().items() if k not in ("edge_index", "edge_attr")}
        self.data = Data(**fields, edge_index=store["edge_index"].long(), edge_attr=edge_attr)
        self.slices = {**slices, "edge_index": edge_slice, "edge_attr": edge_slice.clone()}
        self.build_seconds = store.get("build_seconds")

    def batch(self, ids) -> Batch:
        """The PyG Batch of the molecules at storage positions `ids`, equal to
        `Batch.from_data_list([self[i] for i in ids])` (tested: values, slices, increments) but gathered
        with one index operation per field instead of one Data object per molecule. The index
        arithmetic is numpy's: torch's repeat_interleave on these small inputs goes through its thread
        pool, which costs ~30 ms a batch instead of ~1 when the cores are busy (2 threads, load 5)."""
        ids = np.asarray(ids, dtype=np.int64)
        nodes = self.slices["pos"].numpy()
        num_nodes = nodes[ids + 1] - nodes[ids]
        node_inc = np.cumsum(num_nodes) - num_nodes
        out, slice_dict, inc_dict = {}, {}, {}
        for key, value in self._data.to_dict().items():
            bounds = self.slices[key].numpy()
            start, count = bounds[ids], bounds[ids + 1] - bounds[ids]
            ends = np.cumsum(count)
            slice_dict[key] = torch.from_numpy(np.concatenate([[0], ends]))
            if isinstance(value, list):  # graph-level strings (name, smiles): one per molecule
                out[key], inc_dict[key] = [value[i] for i in start.tolist()], None
                continue
            at = torch.from_numpy(np.arange(ends[-1] if len(ends) else 0) + np.repeat(start - (ends - count), count))
            if key == "edge_index":
                out[key] = value[:, at] + torch.from_numpy(np.repeat(node_inc, count))
                inc_dict[key] = torch.from_numpy(node_inc)
            else:  # every other field of the storage is concatenated along dim 0 without increment
                out[key], inc_dict[key] = value[at], torch.zeros(len(ids), dtype=torch.long)
        b = Batch(_base_cls=Data)
        for key, value in out.items():
            b[key] = value
        b.batch = torch.from_numpy(np.repeat(np.arange(len(ids)), num_nodes))
        b.ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(num_nodes)]))
        b._slice_dict, b._inc_dict, b._num_graphs = slice_dict, inc_dict, len(ids)
        return b
