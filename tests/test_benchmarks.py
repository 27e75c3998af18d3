"""Every registered benchmark (one YAML under configs/benchmark/), end to end on its tiny fixture:
spec, config composition, fixture in the real on-disk format, build, two training steps through the
trainer, evaluation and the summary. A new YAML is tested here without any edit; a new benchmark
module needs its entry in mtl/benchmarks/fixtures.py TINY (the test says so)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mtl.benchmarks import fixtures as tiny_fixtures
from mtl.datasets import fixtures
from mtl.benchmarks import available, from_config, spec
from mtl.errors import UnknownName
from mtl.config.compose import compose
from mtl.run.trainer import build_benchmark

TWO_STEPS = ["trainer.epochs=1", "trainer.max_steps_per_epoch=2", "run.checkpoint=false", "method=ew"]


def _finite_and_complete(metrics: dict, keys: list[str], where: str) -> None:
    got = [f"{t}/{m}" for t, per_task in metrics.items() for m in per_task]
    assert sorted(got) == sorted(keys), f"{where}: reported {got}, the spec has {keys}"
    bad = {k: metrics[k.split("/")[0]][k.split("/", 1)[1]] for k in keys
           if not math.isfinite(metrics[k.split("/")[0]][k.split("/", 1)[1]])}
    assert not bad, f"{where}: non-finite metrics {bad}"


@pytest.mark.parametrize("name", available())
def test_spec_matches_the_configs_reference_block(name):
    s = spec(name)  # no data read: the spec never needs any
    assert s.name == name
    assert s.task_names == list(s.reference)  # the reference block has one entry per task, in order
    for t in s.tasks:
        assert t.metric_names == list(s.reference[t.name])
    assert s.keys == [f"{t}/{m}" for t in s.reference for m in s.reference[t]]
    assert s.protocol["epochs"] > 0 and s.reference_source


@pytest.mark.parametrize("name", available())
def test_benchmark_on_its_tiny_fixture(name, tmp_path, train):
    s = spec(name)
    data = tmp_path / "data"
    tiny = tiny_fixtures.tiny_overrides(name, data)  # fails for a module without an entry in TINY

    # the fixture: every path the overrides name was written
    paths = [Path(o.split("=", 1)[1]) for o in tiny if o.split("=", 1)[1].startswith(str(data))]
    assert all(p.exists() for p in paths), f"{name}: fixture paths missing: {[p for p in paths if not p.exists()]}"

    # the config composes; the tiny variant has the same tasks as the spec
    cfg = compose([*tiny, *TWO_STEPS, "logger=none", "device=cpu"])
    assert cfg.benchmark.name == name and from_config(cfg.benchmark).tasks == s.tasks

    # build() on the fixture; the built benchmark's tasks are the spec's
    torch.manual_seed(0)
    bench = build_benchmark(cfg)
    assert tuple(bench.tasks) == s.tasks, f"{name}: build() tasks differ from tasks() of the spec"
    assert bench.splits(), f"{name}: no evaluation split"
    for split in bench.splits():
        _finite_and_complete(bench.evaluate(bench.model, split, torch.device("cpu")), s.keys, f"{name} {split}")

    # two training steps through the trainer; the summary reports every spec key, finite
    run_dir = train([*tiny, *TWO_STEPS])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["benchmark"] == name
    _finite_and_complete(summary["metrics"], s.keys, f"{name} summary")


def test_a_benchmark_module_without_fixture_is_told_to_add_one(monkeypatch, tmp_path):
    monkeypatch.delitem(tiny_fixtures.TINY, "mtl.benchmarks.toy")
    with pytest.raises(UnknownName, match=r"benchmark 'toy'.*mtl\.benchmarks\.toy has no tiny fixture.*"
                                          r"add an entry to TINY in mtl/benchmarks/fixtures\.py"):
        tiny_fixtures.tiny_overrides("toy", tmp_path)


def test_every_data_format_has_a_registered_writer(tmp_path):
    """Each writer produces a data set its own loader reads."""
    from mtl.datasets import cityscapes, nyuv2, office, qm9

    assert {"nyuv2", "cityscapes", "qm9", "office31", "officehome"} <= set(fixtures.WRITERS)
    assert len(nyuv2.NYUv2(fixtures.write_fixture("nyuv2", tmp_path / "n", n_train=2, n_val=1), "val")) == 1
    assert len(cityscapes.Cityscapes(fixtures.write_fixture("cityscapes", tmp_path / "c", n_train=2, n_val=1),
                                     "train")) == 2
    assert len(qm9.QM9File(fixtures.write_fixture("qm9", tmp_path / "q", n=10))) == 10
    for d in ("office31", "officehome"):
        lists = fixtures.write_fixture(d, tmp_path / d, num_classes=1)
        data = office.load_office(d, tmp_path / d, image_size=8, splits_dir=lists)
        assert set(data["test"]) == {office.task_name(x) for x in office.SPECS[d].domains}
