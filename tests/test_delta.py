"""Δp / Δm on hand-computed arrays and on the paper's own rows."""
import csv
from pathlib import Path

import pytest

from mtl.benchmarks.base import MetricSpec, TaskSpec
from mtl.scoring.delta import delta_m, delta_p, delta_p_per_task

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"

NYU_TASKS = [
    TaskSpec("segmentation", (MetricSpec("mIoU", True), MetricSpec("PAcc", True))),
    TaskSpec("depth", (MetricSpec("AErr", False), MetricSpec("RErr", False))),
    TaskSpec("normal", (MetricSpec("Mean", False), MetricSpec("MED", False), MetricSpec("Within11.25", True),
                        MetricSpec("Within22.5", True), MetricSpec("Within30", True))),
]


def table_rows(name):
    return {r["method"]: r for r in csv.DictReader(open(PAPER / name))}


def as_metrics(row, tasks):
    return {t.name: {m.name: float(row[m.name]) for m in t.metrics} for t in tasks}


def test_hand_computed():
    tasks = [TaskSpec("a", (MetricSpec("acc", True),)),
             TaskSpec("b", (MetricSpec("err", False), MetricSpec("err2", False)))]
    ref = {"a": {"acc": 0.5}, "b": {"err": 2.0, "err2": 4.0}}
    run = {"a": {"acc": 0.6}, "b": {"err": 1.0, "err2": 5.0}}
    # a: +0.2 ; b: mean(+0.5, -0.25) = +0.125 ; Δp = 100 * (0.2 + 0.125) / 2
    assert delta_p(run, ref, tasks) == pytest.approx(16.25)
    assert delta_p_per_task(run, ref, tasks) == pytest.approx({"a": 20.0, "b": 12.5})
    # Δm: flat mean over 3 metrics of -(r) = -(0.2 + 0.5 - 0.25) / 3
    assert delta_m(run, ref, tasks) == pytest.approx(-15.0)


def test_reference_itself_is_zero():
    rows = table_rows("dbmtl_table1_nyuv2_deeplab.csv")
    stl = as_metrics(rows["STL"], NYU_TASKS)
    assert delta_p(stl, stl, NYU_TASKS) == 0.0
    assert delta_m(stl, stl, NYU_TASKS) == 0.0


@pytest.mark.parametrize("method", ["EW", "DB-MTL"])
def test_table1_rows_reproduce_published_delta_p(method):
    rows = table_rows("dbmtl_table1_nyuv2_deeplab.csv")
    stl = as_metrics(rows["STL"], NYU_TASKS)
    got = delta_p(as_metrics(rows[method], NYU_TASKS), stl, NYU_TASKS)
    assert got == pytest.approx(float(rows[method]["delta_p"]), abs=0.05)


def test_nash_mtl_delta_m_of_segnet_rows():
    """nash-mtl's Δm of its published SegNet-MTAN rows (fractions) against the CAGrad STL vector."""
    base = [0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915]
    rows = {"EW": ([0.3929, 0.6533, 0.5493, 0.2263, 28.15, 23.96, 0.2209, 0.4750, 0.6108], 5.59),
            "Nash-MTL": ([0.4013, 0.6593, 0.5261, 0.2171, 25.26, 20.08, 0.2840, 0.5547, 0.6815], -4.04)}
    names = [m.name for t in NYU_TASKS for m in t.metrics]
    ref = {t.name: {} for t in NYU_TASKS}
    for t in NYU_TASKS:
        for m in t.metrics:
            ref[t.name][m.name] = base[names.index(m.name)]
    for vec, published in rows.values():
        run = {t.name: {m.name: vec[names.index(m.name)] for m in t.metrics} for t in NYU_TASKS}
        assert delta_m(run, ref, NYU_TASKS) == pytest.approx(published, abs=0.01)


def test_missing_metric_names_the_metric():
    tasks = [TaskSpec("a", (MetricSpec("acc", True),))]
    with pytest.raises(KeyError, match="a/acc"):
        delta_p({"a": {}}, {"a": {"acc": 1.0}}, tasks)
