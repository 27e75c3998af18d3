"""The benchmark registry: every benchmark's tasks, directions and protocol are known without data."""
import time

import pytest

from mtl import benchmarks
from mtl.benchmarks import available, spec


def test_available_lists_every_benchmark_config():
    assert available() == sorted(p.stem for p in benchmarks.BENCHMARK_CONFIGS.glob("*.yaml"))
    assert {"nyuv2", "cityscapes", "qm9", "office31", "officehome", "synthetic"} <= set(available())


def test_directions_and_units():
    nyu = spec("nyuv2")
    assert nyu.higher_is_better("segmentation/mIoU") and not nyu.higher_is_better("depth/AErr")
    assert nyu.metric("normal/Mean").unit == "deg" and nyu.metric("normal/Within30").unit == "%"
    qm9 = spec("qm9")
    assert [qm9.metric(f"{t}/mae").unit for t in ("mu", "homo", "U0", "cv")] == ["D", "meV", "meV", "cal/(mol K)"]
    assert not any(qm9.higher_is_better(k) for k in qm9.keys)
    assert all(spec("office31").higher_is_better(k) for k in spec("office31").keys)


def test_spec_follows_overrides():
    assert spec("synthetic", ["benchmark.build.num_tasks=4", "benchmark.build.scales=[1,1,1,1]"]).task_names == \
        ["t0", "t1", "t2", "t3"]
    s = spec("qm9", ["benchmark.build.targets=[0,2]", "benchmark.build.task_names=[mu,homo]"])
    assert s.task_names == ["mu", "homo"] and s.metric("homo/mae").unit == "meV"


def test_paper_mapping():
    assert spec("nyuv2").paper.csv == "dbmtl_table1_nyuv2_deeplab.csv"
    assert spec("synthetic").paper is None
    for name in available():  # every paper column names a task/metric the benchmark reports
        s = spec(name)
        if s.paper is not None:
            assert {f"{t}/{m}" for t, m in s.paper.column_map().values()} <= set(s.keys), name


def test_unknown_benchmark_names_the_available_ones():
    with pytest.raises(KeyError, match="unknown benchmark 'nyu'.*nyuv2"):
        spec("nyu")


def test_a_repeated_spec_takes_milliseconds():
    spec("nyuv2")
    t0 = time.perf_counter()
    spec("nyuv2")
    assert time.perf_counter() - t0 < 0.05  # a cached lookup: microseconds, with room for a busy machine
