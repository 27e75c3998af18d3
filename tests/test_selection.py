"""Which epoch a run reports: LibMTL's epoch-0 improvement rule (protocol A), nash-mtl's Δm rule
with latest ties (protocol B), the explicit STL-based option, and the plateau scheduler's quantity."""
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mtl.benchmarks.base import MetricSpec, TaskSpec
from mtl.scoring.delta import delta_m, delta_p, delta_p_per_task
from mtl.scoring.selection import improvement, select

MAE = (MetricSpec("mae", False),)
TASKS = [TaskSpec("a", MAE), TaskSpec("b", MAE)]
STL = {"a": {"mae": 1.0}, "b": {"mae": 100.0}}


def _deltas(ref, tasks):
    return lambda m: {"delta_p": delta_p(m, ref, tasks), "delta_m": delta_m(m, ref, tasks),
                      "delta_p_per_task": delta_p_per_task(m, ref, tasks)}


def _history(val_rows, tasks, ref):
    """One record per epoch as the trainer writes them (test metrics = val metrics shifted)."""
    out = []
    for e, val in enumerate(val_rows):
        test = {t: {m: v * 1.01 for m, v in ms.items()} for t, ms in val.items()}
        r = {"epoch": e, "val": val, "test": test}
        for split in ("val", "test"):
            r[f"{split}_delta_p"] = delta_p(r[split], ref, tasks)
            r[f"{split}_delta_m"] = delta_m(r[split], ref, tasks)
        out.append(r)
    return out


# ---- LibMTL `_record.py` `_PerformanceMeter`, transcribed line by line (val split present) -----------
def libmtl_count_improvement(base_result, new_result, weight):
    improvement = 0
    count = 0
    for task in list(base_result.keys()):
        improvement += (((-1) ** np.array(weight[task])) *
                        (np.array(base_result[task]) - np.array(new_result[task])) /
                        np.array(base_result[task])).mean()
        count += 1
    return improvement / count


class LibMTLMeter:
    def __init__(self, weight):
        self.weight = weight
        self.base_result = None
        self.best_result = {"improvement": -1e+2, "epoch": 0}

    def display_val(self, results, epoch):  # display(mode='val', epoch) with has_val
        if epoch == 0 and self.base_result is None:
            self.base_result = results
        improvement = libmtl_count_improvement(self.base_result, results, self.weight)
        self.improvement = improvement
        if improvement > self.best_result["improvement"]:
            self.best_result["improvement"] = improvement
            self.best_result["epoch"] = epoch


def libmtl_best_epoch(history, tasks):
    weight = {t.name: [1 if m.higher_is_better else 0 for m in t.metrics] for t in tasks}
    meter = LibMTLMeter(weight)
    for r in history:
        meter.display_val({t.name: [r["val"][t.name][m.name] for m in t.metrics] for t in tasks}, r["epoch"])
    return meter.best_result["epoch"], meter.best_result["improvement"]


# Epoch 1 is best by Δp against STL (-100 vs -105); epoch 2 by improvement over epoch 0 (57.5 vs 40).
CONSTRUCTED = [{"a": {"mae": 10.0}, "b": {"mae": 200.0}},
               {"a": {"mae": 2.0}, "b": {"mae": 200.0}},
               {"a": {"mae": 3.0}, "b": {"mae": 110.0}}]


def test_epoch0_selection_matches_libmtl_where_stl_choice_differs():
    hist = _history(CONSTRUCTED, TASKS, STL)
    imp = lambda new, base: improvement(new, base, TASKS)
    chosen = select(hist, "best_val", _deltas(STL, TASKS), baseline="epoch0", improvement_fn=imp)
    stl = select(hist, "best_val", _deltas(STL, TASKS), baseline="stl")
    ref_epoch, ref_imp = libmtl_best_epoch(hist, TASKS)
    assert (chosen["epoch"], stl["epoch"]) == (2, 1)
    assert chosen["epoch"] == ref_epoch and chosen["score"] == pytest.approx(100 * ref_imp, rel=1e-12)
    assert chosen["baseline"] == "epoch0" and stl["baseline"] == "stl"
    # the reported Δp stays against the STL reference
    assert chosen["delta_p"] == pytest.approx(delta_p(hist[2]["test"], STL, TASKS))


@pytest.mark.parametrize("seed", range(20))
def test_epoch0_selection_matches_libmtl_on_random_histories(seed):
    g = np.random.default_rng(seed)
    tasks = [TaskSpec("seg", (MetricSpec("miou", True), MetricSpec("pacc", True))),
             TaskSpec("depth", (MetricSpec("aerr", False),))]
    # coarse values so that ties occur: LibMTL keeps the earlier epoch
    rows = [{"seg": {"miou": float(g.integers(1, 4)), "pacc": float(g.integers(1, 4))},
             "depth": {"aerr": float(g.integers(1, 4))}} for _ in range(8)]
    ref = {"seg": {"miou": 3.0, "pacc": 2.0}, "depth": {"aerr": 1.0}}
    hist = _history(rows, tasks, ref)
    chosen = select(hist, "best_val", _deltas(ref, tasks), baseline="epoch0",
                    improvement_fn=lambda n, b: improvement(n, b, tasks))
    assert chosen["epoch"] == libmtl_best_epoch(hist, tasks)[0]


def test_nashmtl_rule_selects_on_delta_m_and_keeps_latest_tie():
    # seg has two metrics, depth one: Δp weighs tasks equally, Δm weighs metrics equally
    tasks = [TaskSpec("seg", (MetricSpec("miou", True), MetricSpec("pacc", True))),
             TaskSpec("depth", (MetricSpec("aerr", False),))]
    ref = {"seg": {"miou": 1.0, "pacc": 1.0}, "depth": {"aerr": 1.0}}
    rows = [{"seg": {"miou": 1.0, "pacc": 1.0}, "depth": {"aerr": 1.3}},   # Δp -15, Δm +10
            {"seg": {"miou": 0.9, "pacc": 0.9}, "depth": {"aerr": 1.0}},   # Δp  -5, Δm +6.67
            {"seg": {"miou": 1.0, "pacc": 1.0}, "depth": {"aerr": 1.3}},   # same as epoch 0
            {"seg": {"miou": 0.9, "pacc": 0.9}, "depth": {"aerr": 1.0}}]   # tie with epoch 1
    hist = _history(rows, tasks, ref)
    # nash-mtl trainer.py: best_val_delta = inf; `if val_delta <= best_val_delta: best = epoch`
    best, best_epoch = np.inf, None
    for r in hist:
        if r["val_delta_m"] <= best:
            best, best_epoch = r["val_delta_m"], r["epoch"]
    on_m = select(hist, "best_val", _deltas(ref, tasks), baseline="stl", ties="latest", delta="m")
    assert on_m["epoch"] == best_epoch == 3
    assert select(hist, "best_val", _deltas(ref, tasks), baseline="stl", ties="earliest", delta="m")["epoch"] == 1
    # Δp and Δm disagree on this history, so the protocol's delta decides
    rows[2] = {"seg": {"miou": 1.2, "pacc": 1.2}, "depth": {"aerr": 1.5}}   # Δp -15, Δm +3.3
    hist = _history(rows, tasks, ref)
    assert select(hist, "best_val", _deltas(ref, tasks), baseline="stl", ties="latest", delta="m")["epoch"] == 2
    assert select(hist, "best_val", _deltas(ref, tasks), baseline="stl", ties="latest", delta=["p", "m"])["epoch"] == 3


class _Bench:
    tasks = TASKS


class _Method:
    @staticmethod
    def active_tasks():
        return None


def _trainer(protocol):
    from mtl.run.trainer import Trainer

    t = Trainer.__new__(Trainer)
    t.protocol = OmegaConf.create(protocol)
    t.bench, t.method = _Bench(), _Method()
    return t


def test_plateau_scheduler_steps_with_libmtl_improvement():
    """LibMTL Trainer.train: scheduler.step(val_improvement), the improvement over epoch-0 val results."""
    hist = _history(CONSTRUCTED, TASKS, STL)
    seen = []

    class Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics):
            seen.append(metrics)

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    for monitor, expected in (("val_improvement", [0.0, 40.0, 57.5]),
                              ("val_delta_p", [r["val_delta_p"] for r in hist])):
        seen.clear()
        t = _trainer({"monitor": monitor, "reference": {"metrics": STL}})
        t.scheduler = Plateau(opt, mode="max")
        done = []
        for r in hist:
            t._step_scheduler(r, done)
            done.append(r)
        assert seen == pytest.approx(expected)


def test_summary_records_the_baseline_that_chose_the_epoch(train):
    short = ["benchmark=synthetic", "trainer.epochs=3", "benchmark.build.n_train=256", "method=ew"]
    s = json.loads((train(short) / "summary.json").read_text())
    assert s["selection_baseline"] == "epoch0" and s["reported"]["best_val"]["baseline"] == "epoch0"
    s2 = json.loads((train([*short, "benchmark.protocol.selection_baseline=stl", "run.tag=_stl"])
                     / "summary.json").read_text())
    assert s2["selection_baseline"] == "stl"
