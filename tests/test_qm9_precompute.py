"""QM9's precomputed model graphs (`mtl.datasets.qm9.PrecomputedGraphs`, benchmark.build.precompute):
bit-identical to the per-item transforms, cached once, a damaged cache named, resumed runs with
loader workers identical to uninterrupted ones, and the loader benchmark module."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtl.datasets import qm9 as Q
from mtl.datasets.fixtures import write_fixture
from mtl.datasets.qm9.graphs import _graph_edges
from mtl.benchmarks import qm9 as B
from mtl.errors import DatasetDamaged
from mtl.run.testing import kill_after_epoch

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 2000


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return Q.QM9(root=tmp_path_factory.mktemp("qm9p"), limit=LIMIT, progress=False)


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory):
    return write_fixture("qm9", tmp_path_factory.mktemp("qm9f"), n=200)


def assert_same_as_transform(source, graph):
    pre = Q.PrecomputedGraphs(source, graph, progress=False)
    transform = B.reference_transform(graph)
    assert len(pre) == len(source)
    for i in range(len(source)):
        ref, got = transform(source.get(i).clone()), pre[i]
        for key in ("edge_index", "edge_attr"):
            assert ref[key].dtype == got[key].dtype and torch.equal(ref[key], got[key]), (graph, i, key)
        for key in ("x", "z", "pos", "y", "idx"):
            assert torch.equal(torch.as_tensor(ref[key]), torch.as_tensor(got[key])), (graph, i, key)
        assert ref.name == got.name
    return pre


@pytest.mark.parametrize("graph", ["complete", "bonds"])
def test_bitwise_equal_to_the_transform_on_qm9(source, graph):
    """Every one of the 2,000 molecules: same edges in the same order, same features to the bit."""
    pre = assert_same_as_transform(source, graph)
    n = source.slices["pos"].diff()
    expected = int((n * (n - 1)).sum()) if graph == "complete" else source._data.edge_index.shape[1]
    assert pre._data.edge_index.shape == (2, expected) and pre._data.edge_attr.shape == (expected, 5)


@pytest.mark.parametrize("graph", ["complete", "bonds"])
def test_bitwise_equal_to_the_transform_on_a_fixture_file(fixture_file, graph):
    assert_same_as_transform(Q.QM9File(fixture_file), graph)


@pytest.mark.parametrize("graph", ["complete", "bonds"])
def test_gathered_batch_equals_pyg_collation(source, graph):
    """`PrecomputedGraphs.batch` (the precompute loaders' one-gather batches) gives exactly PyG's
    Batch.from_data_list: every field, the batch/ptr vectors, slices, increments, to_data_list."""
    from torch_geometric.data import Batch

    pre = Q.PrecomputedGraphs(source, graph, progress=False)
    ids = torch.randperm(len(pre), generator=torch.Generator().manual_seed(0))[:77].tolist()
    got, ref = pre.batch(ids), Batch.from_data_list([pre[i] for i in ids])
    assert type(got) is type(ref) and set(got.keys()) == set(ref.keys()) and got.num_graphs == ref.num_graphs == 77
    for key in ref.keys():
        if isinstance(ref[key], list):
            assert got[key] == ref[key], key
        else:
            assert got[key].dtype == ref[key].dtype and torch.equal(got[key], ref[key]), key
    for key in ref._slice_dict:
        assert torch.equal(got._slice_dict[key], ref._slice_dict[key]), key
        assert (got._inc_dict[key] is None and ref._inc_dict[key] is None) or torch.equal(
            got._inc_dict[key], ref._inc_dict[key]), key
    assert torch.equal(got.get_example(5).edge_attr, pre[ids[5]].edge_attr)


def test_unknown_graph_and_duplicate_bonds(fixture_file):
    with pytest.raises(ValueError, match="graph='knn' unknown"):
        B.build(data_file=str(fixture_file), graph="knn", progress=False)
    ds = Q.QM9File(fixture_file)
    ei = ds._data.edge_index
    with pytest.raises(ValueError, match="duplicate bonds"):
        _graph_edges(torch.cat([ei[:, :1], ei], 1), ds.slices["edge_index"] + torch.cat(
            [torch.zeros(1, dtype=torch.long), torch.ones(len(ds), dtype=torch.long)]), ds.slices["pos"],
            ds._data.pos, "complete")


def test_batches_and_model_outputs_equal_with_and_without_precompute(source):
    root = Path(source.root)
    common = dict(root=str(root), limit=LIMIT, subset={"train": 64, "val": 8, "test": 8}, batch_size=32,
                  progress=False)
    on, off = B.build(precompute=True, **common), B.build(precompute=False, **common)
    assert isinstance(on.dataset, Q.PrecomputedGraphs) and off.dataset.transform is not None
    assert [len(on.loaders[s]) for s in on.loaders] == [len(off.loaders[s]) for s in off.loaders] == [2, 1, 1]
    off.model.load_state_dict(on.model.state_dict())
    for a, b in zip(on.train_batches(1, 3), off.train_batches(1, 3)):
        assert a.name == b.name and a.num_graphs == b.num_graphs == 32
        for key in ("x", "z", "edge_index", "edge_attr", "pos", "y", "idx", "batch", "ptr"):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        with torch.no_grad():
            out_a, _ = on.model(a)
            out_b, _ = off.model(b)
        assert all(torch.equal(out_a[t], out_b[t]) for t in out_a)
    assert on.evaluate(on.model, "val", torch.device("cpu")) == off.evaluate(off.model, "val", torch.device("cpu"))


def test_cache_built_once_reused_and_keyed(fixture_file, monkeypatch, tmp_path):
    path = write_fixture("qm9", tmp_path, n=40)
    first = Q.PrecomputedGraphs(Q.QM9File(path), "complete", progress=False)
    assert first.path.parent == path.parent and first.path.is_file()
    stamp = first.path.stat().st_mtime_ns

    def no_build(self, progress):
        raise AssertionError("the derived cache must be reused, not rebuilt")

    monkeypatch.setattr(Q.PrecomputedGraphs, "_build", no_build)
    again = Q.PrecomputedGraphs(Q.QM9File(path), "complete", progress=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert torch.equal(again._data.edge_attr, first._data.edge_attr)
    monkeypatch.undo()
    bonds = Q.PrecomputedGraphs(Q.QM9File(path), "bonds", progress=False)  # another graph: another file
    other = Q.PrecomputedGraphs(Q.QM9File(write_fixture("qm9", tmp_path / "b", n=41)), "complete", progress=False)
    assert len({first.path, bonds.path, other.path}) == 3
    assert not list(tmp_path.rglob("*.tmp"))  # written under a temporary name, renamed into place


def test_qm9_derived_cache_beside_the_source_and_prepared(source):
    from mtl.datasets.qm9 import prepare

    folder = prepare(root=source.root, limit=LIMIT, graph="bonds", progress=False)
    stem = Path(source.processed_paths[0]).stem
    assert {p.name.split("_")[-2] for p in folder.glob(f"{stem}_*.pt")} >= {"bonds"}


@pytest.mark.parametrize("damage", [b"", b"not a torch file", "key"])
def test_a_damaged_cache_is_one_line_naming_it(tmp_path, damage):
    path = write_fixture("qm9", tmp_path, n=30)
    pre = Q.PrecomputedGraphs(Q.QM9File(path), "complete", progress=False)
    if damage == "key":  # a readable file with other contents (e.g. copied from another source)
        store = torch.load(pre.path, weights_only=True)
        store["edge_slice"] = store["edge_slice"][:-1]
        torch.save(store, pre.path)
    else:
        pre.path.write_bytes(damage)
    with pytest.raises(DatasetDamaged) as err:
        Q.PrecomputedGraphs(Q.QM9File(path), "complete", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and str(pre.path) in msg and f"rm {pre.path}" in msg and "precompute=false" in msg


def test_train_batches_with_workers_equal_and_repeatable(fixture_file):
    common = dict(data_file=str(fixture_file), subset={"train": 48, "val": 8, "test": 8}, batch_size=8,
                  progress=False)
    names = {}
    for w in (0, 2):
        b = B.build(num_workers=w, **common)
        names[w] = [[bt.name for bt in b.train_batches(e, 4)] for e in (0, 1, 0)]
    assert names[0] == names[2]  # workers change nothing in the batches
    assert names[2][0] == names[2][2] != names[2][1]  # a function of (seed, epoch)


def test_kill_and_resume_with_workers_equals_uninterrupted(fixture_file, tmp_path):
    """benchmark.build.num_workers=2: a run killed after epoch 0 and resumed ends with the same
    numbers as an uninterrupted one (the shuffle of each epoch depends only on (seed, epoch))."""
    from mtl.run.entry import run

    b = "benchmark.build"
    common = ["benchmark=qm9", "device=cpu", f"{b}.data_file={fixture_file}", f"{b}.num_workers=2",
              f"{b}.subset={{train:32,val:8,test:8}}", f"{b}.batch_size=8", f"{b}.eval_batch_size=8",
              f"{b}.dim=8", f"{b}.progress=false", "method=ew", "seed=3", "logger=none", "trainer.epochs=2",
              "trainer.progress=false"]
    full = run([*common, f"run.root={tmp_path / 'full'}"])
    killed = subprocess.run([sys.executable, "-m", "mtl.train", *common, f"run.root={tmp_path / 'resumed'}",
                             kill_after_epoch(0)], capture_output=True, text=True, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run([*common, f"run.root={tmp_path / 'resumed'}"])
    a, c = json.loads((full / "summary.json").read_text()), json.loads((resumed / "summary.json").read_text())
    assert (a["metrics"], a["delta_p"], a["steps"]) == (c["metrics"], c["delta_p"], c["steps"])


def test_loader_benchmark_module(fixture_file):
    from mtl.perf import loader

    df = loader.run(batch_size=32, epochs=2, steps=2, workers=(0, 1), precompute=(True, False), threads=1,
                    data_file=str(fixture_file), log=lambda *_: None)
    assert len(df) == 5 and list(df["what"]).count("loader") == 4
    assert df["batches_per_epoch"].tolist()[:4] == [6] * 4  # the fixture's 166 train molecules in batches of 32
    loaders = df[df["what"] == "loader"]
    assert (loaders["per_s_min"] <= loaders["per_s"]).all() and (loaders["per_s"] <= loaders["per_s_max"]).all()
    assert (df["per_s"] > 0).all() and df.loc[df["what"] != "loader", "ratio"].tolist() == [1.0]
    assert {"ratio", "first_batch_s", "load_1min", "machine", "graph", "batch_size"} <= set(df.columns)


def test_loader_benchmark_assembly_rows(source):
    from mtl.perf import loader

    df = loader.assembly(batches=8, batch_size=16, root=source.root, limit=LIMIT)
    assert df["precompute"].tolist() == [True, False] and (df["per_s"] > 0).all()
    assert f"{LIMIT} molecules" in df["what"].iloc[0]
