"""`qm9`: 11 molecular property regressions on QM9 with the MPNN of nash-mtl / LibMTL.

Data: `mtl.datasets.qm9.QM9` (PyG's QM9 rebuilt offline from qm9pack, same molecules and order).
Each item is the references' `Complete` (fully connected graph without self loops; bonded pairs
keep their 4-d bond one-hot, others zeros) + `Distance(norm=False)` (appends the distance in Å), so
edges carry 5 features. `graph="bonds"` (CPU demo only) skips `Complete`: edges are the chemical
bonds, with the same 5 features. By default (`precompute=True`) these graphs are computed once and
cached beside the data (`mtl.datasets.qm9.PrecomputedGraphs`, bit-identical to the transforms);
`precompute=False` applies `reference_transform` per molecule per epoch, as the references do.

Targets are z-scored with the mean/std over ALL loaded molecules (train, val and test): the
quirk of both references (LibMTL z-scores `dataset.data.y`; nash-mtl's `train_dataset.data.y`
is the full storage too). Loss: MSE per target on z-scored values. Metric: MAE in PyG units
(eV, D, a0^3, a0^2, cal/mol/K), times 1000 (meV) for homo, lumo, zpve, U0, U, H, G.

Splits: "libmtl" = LibMTL's fixed permutation (examples/qm9/random_split.t, shipped as
datasets/qm9_data/libmtl_random_split.npy): test = first 10,000, val = next 10,000, train = rest;
"seeded" = nash-mtl's `dataset.shuffle()` after set_seed(s), i.e. torch.randperm with seed s.
With `limit` (only the first `limit` molecules built), each molecule keeps the split it has in
the full protocol; `subset` then takes the first k of each split (CPU-sized variant).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose, Distance
from torch_geometric.utils import remove_self_loops

from mtl.datasets.qm9 import GRAPHS, NUM_MOLECULES, QM9, TARGETS, PrecomputedGraphs, QM9File, batch_loader
from mtl.models.mpnn import mpnn_hps
from mtl.benchmarks.base import Benchmark, MetricSpec, TaskSpec, stack_task_losses, task_indices, to_device
from mtl.errors import DatasetNotFound
from mtl.paths import PACKAGE

# The 11 targets (PyG indices) of nash-mtl and LibMTL, in output order (LibMTL main.py --target
# default = nash-mtl utils.py target_idx), and their task names: the one place of both (the configs
# leave `targets`/`task_names` null, the paper table takes its columns from the registry's tasks).
DEFAULT_TARGETS = (0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11)
DEFAULT_TASK_NAMES = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv")


def _targets_and_names(targets: Sequence[int] | None, task_names: Sequence[str] | None) -> tuple[list[int], list[str]]:
    """null targets: the references' 11; null task_names: DEFAULT_TASK_NAMES for those, else each
    target's PyG name (mtl.datasets.qm9.TARGETS)."""
    targets = list(DEFAULT_TARGETS if targets is None else (int(t) for t in targets))
    if task_names is None:
        if targets == list(DEFAULT_TARGETS):
            task_names = DEFAULT_TASK_NAMES
        else:
            task_names = [TARGETS[t] if 0 <= t < len(TARGETS) else str(t) for t in targets]
    return targets, list(task_names)
MEV_TARGETS = frozenset({2, 3, 6, 12, 13, 14, 15})  # eV -> meV in the reported MAE (both references)
# Reported unit of each PyG target's MAE (PyG QM9 docs; energies converted eV -> meV above)
UNITS = {0: "D", 1: "a0^3", 4: "eV", 5: "a0^2", 7: "eV", 8: "eV", 9: "eV", 10: "eV", 11: "cal/(mol K)",
         16: "GHz", 17: "GHz", 18: "GHz", **{t: "meV" for t in MEV_TARGETS}}
SPLIT_FILE = PACKAGE / "datasets" / "qm9_data" / "libmtl_random_split.npy"
SPLITS = ("libmtl", "seeded")


class Complete:
    """Fully connected graph without self loops (the references' `Complete` transform, edges in
    row-major order); bonded pairs keep their edge_attr, the others get zeros."""

    def __call__(self, data):
        n = data.num_nodes
        ar = torch.arange(n, device=data.edge_index.device)
        row, col = ar.repeat_interleave(n), ar.repeat(n)
        edge_attr = None
        if data.edge_attr is not None:
            edge_attr = data.edge_attr.new_zeros((n * n, data.edge_attr.size(1)))
            edge_attr[data.edge_index[0] * n + data.edge_index[1]] = data.edge_attr
        data.edge_index, data.edge_attr = remove_self_loops(torch.stack([row, col]), edge_attr)
        return data

    def __repr__(self) -> str:
        return "Complete()"


def reference_transform(graph: str = "complete"):
    """Per-item transform: `complete` = the references' Complete + Distance (n(n-1) edges per
    molecule); `bonds` = the chemical bonds only + Distance (same 5-d edge features, ~8x fewer
    edges on QM9, so the edge network -- most of the MPNN's cost -- runs ~8x less)."""
    if graph == "complete":
        return Compose([Complete(), Distance(norm=False)])
    if graph == "bonds":
        return Distance(norm=False)
    raise ValueError(f"qm9: graph={graph!r} unknown; choose one of {GRAPHS}")


def split_indices(kind: str = "libmtl", n_test: int = 10_000, n_val: int = 10_000, seed: int = 42,
                  limit: int | None = None) -> dict[str, torch.Tensor]:
    """Dataset positions of test/val/train (in split order), restricted to positions < limit."""
    if kind == "libmtl":
        if not SPLIT_FILE.is_file():
            raise DatasetNotFound(f"QM9: LibMTL split file missing at {SPLIT_FILE} (it ships with the "
                                  f"project; restore it from git).")
        perm = torch.from_numpy(np.load(SPLIT_FILE).astype(np.int64))
    elif kind == "seeded":
        perm = torch.randperm(NUM_MOLECULES, generator=torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"QM9 split {kind!r} unknown; choose one of {SPLITS}")
    if len(perm) != NUM_MOLECULES:
        raise DatasetNotFound(f"QM9: split permutation has {len(perm)} entries, expected {NUM_MOLECULES}.")
    parts = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}
    if limit is not None:
        parts = {k: v[v < limit] for k, v in parts.items()}
    return parts


class QM9Benchmark(Benchmark):
    name = "qm9"

    def __init__(self, root: str | None = None, targets: Sequence[int] | None = None,
                 task_names: Sequence[str] | None = None, split: str = "libmtl",
                 split_seed: int = 42, n_test: int = 10_000, n_val: int = 10_000,
                 limit: int | None = None, subset: dict | None = None, batch_size: int = 128,
                 eval_batch_size: int | None = None, features: str = "pyg", ghost_bonds: bool = True,
                 dim: int = 64, num_workers: int = 0, progress: bool = True, share_edge_weights: bool = True,
                 graph: str = "complete", precompute: bool = True,
                 data_file: str | None = None):
        targets, task_names = _targets_and_names(targets, task_names)
        self.tasks = tasks(targets=targets, task_names=task_names)  # checks one name per target
        bad = [t for t in targets if not 0 <= t < len(TARGETS)]
        if bad:
            raise ValueError(f"qm9: target indices {bad} outside 0..{len(TARGETS) - 1}")
        self.targets = targets
        transform = reference_transform(graph)  # also rejects an unknown graph before any build
        if data_file is not None:  # a QM9-format fixture file (mtl.datasets.qm9.write_fixture): no qm9pack
            self.source = QM9File(data_file)
        else:
            self.source = QM9(root=root, features=features, ghost_bonds=ghost_bonds, limit=limit, progress=progress)
        # self.source: the stored molecules (bond graphs, 4-d edge features); self.dataset: the model's
        # input graphs, precomputed once or transformed per item on every access
        if precompute:
            self.dataset = PrecomputedGraphs(self.source, graph, progress=progress)
        else:
            self.dataset = copy.copy(self.source)  # shares the storage; only the transform differs
            self.dataset.transform, self.dataset._data_list = transform, None
        y = self.dataset._data.y[:, targets]
        # Reference quirk: statistics over every loaded molecule (float32, unbiased std, as torch).
        self.target_mean, self.target_std = y.mean(0), y.std(0)
        self.scale = torch.tensor([1000.0 if t in MEV_TARGETS else 1.0 for t in targets], dtype=torch.float64)
        parts = split_indices(split, n_test, n_val, split_seed, self.dataset.limit)
        for s, k in (subset or {}).items():
            if s not in parts:
                raise ValueError(f"qm9 subset key {s!r} unknown; use train/val/test")
            if k is not None:
                if len(parts[s]) < k:
                    raise ValueError(f"qm9: subset {s}={k} but only {len(parts[s])} {s} molecules within limit={limit}")
                parts[s] = parts[s][:k]
        self.split_positions = parts
        # share_edge_weights: run the edge network once per forward instead of once per round (same
        # values, ~2.3x faster); false calls NNConv in each round as the references do
        self.model = mpnn_hps(task_names, dim=dim, share_edge_weights=bool(share_edge_weights))
        ebs = eval_batch_size or batch_size
        # pinned host memory lets the copies to a GPU run asynchronously (to_device copies non-blocking).
        # Workers are NOT persistent: a fresh iterator draws the workers' base seed from the loader's
        # generator before the sampler draws its permutation, a reused (persistent) one does not, so
        # after train_batches reseeds the generator an uninterrupted run's epoch e and a resumed run's
        # epoch e would shuffle differently (tested). Starting the workers again each epoch costs a
        # fork per worker (measured in mtl/perf/loader.py), small against an epoch of steps.
        common = dict(num_workers=num_workers, pin_memory=torch.cuda.is_available())
        if precompute:  # each batch gathered from the storage at once (same batches as below, tested)
            def loader(split, size, **kw):
                return batch_loader(self.dataset, parts[split], size, **kw, **common)
        else:  # per molecule: slice, transform, then collate
            def loader(split, size, **kw):
                return DataLoader(self.dataset[parts[split]], batch_size=size, **kw, **common)
        self.loaders = {"train": loader("train", batch_size, shuffle=True, generator=torch.Generator()),
                        "val": loader("val", ebs), "test": loader("test", ebs)}

    def normalized_targets(self, batch) -> torch.Tensor:
        y = batch.y[:, self.targets]
        return (y - self.target_mean.to(y.device)) / self.target_std.to(y.device)

    def predictions(self, out: dict) -> torch.Tensor:
        return torch.cat([out[t.name].reshape(-1, 1) for t in self.tasks], dim=1)

    def compute_losses(self, model, batch, rep_grad=False, tasks=None):
        if tasks is None:
            out, rep = model(batch, rep_grad=rep_grad)
            return ((self.predictions(out) - self.normalized_targets(batch)) ** 2).mean(0), rep
        idx = task_indices(tasks, len(self.tasks))
        out, rep = model(batch, rep_grad=rep_grad, tasks=[self.tasks[i].name for i in idx])
        y = self.normalized_targets(batch)
        values = {i: ((out[self.tasks[i].name].reshape(-1) - y[:, i]) ** 2).mean() for i in idx}
        return stack_task_losses(values, len(self.tasks)), rep

    def sample_losses(self, model, batch, rep_grad=False):
        """Per-molecule squared errors [B, T] (their mean over the batch is `compute_losses`)."""
        out, rep = model(batch, rep_grad=rep_grad)
        return (self.predictions(out) - self.normalized_targets(batch)) ** 2, rep

    def mae(self, pred_norm: torch.Tensor, y_norm: torch.Tensor) -> torch.Tensor:
        """Summed absolute error per target in reported units (LibMTL: |pred*std - gt*std|, x1000
        for the meV targets) over the rows given; [T] float64."""
        err = (pred_norm.double() - y_norm.double()).abs() * self.target_std.double().to(pred_norm.device)
        return err.sum(0) * self.scale.to(pred_norm.device)

    @torch.no_grad()
    def evaluate(self, model, split, device):
        total = torch.zeros(len(self.tasks), dtype=torch.float64, device=device)  # summed on the device
        n = 0
        for batch in self.loaders[split]:
            batch = to_device(batch, device)
            out, _ = model(batch)
            total += self.mae(self.predictions(out), self.normalized_targets(batch))
            n += batch.num_graphs
        mae = total.cpu() / n  # the one transfer of the evaluation
        return {t.name: {"mae": float(mae[i])} for i, t in enumerate(self.tasks)}


def tasks(targets: Sequence[int] | None = None, task_names: Sequence[str] | None = None,
          **_) -> list[TaskSpec]:
    """One regression task per target, reported as test MAE (lower is better)."""
    targets, task_names = _targets_and_names(targets, task_names)
    if len(targets) != len(task_names):
        raise ValueError(f"qm9: {len(targets)} targets but {len(task_names)} task_names; give one name per target")
    return [TaskSpec(n, (MetricSpec("mae", False, UNITS.get(int(t), "")),)) for t, n in zip(targets, task_names)]


def build(**cfg) -> QM9Benchmark:
    return QM9Benchmark(**cfg)
