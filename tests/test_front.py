"""The scalarization front: the fixed-weights method, the weight grid, the Pareto mask and a tiny
toy front that writes its CSVs and plot and skips finished runs when relaunched."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mtl import methods
from mtl.campaigns import front as fr


def test_fixed_weights_scale_each_loss_and_null_is_ew():
    losses = torch.tensor([1.0, 2.0, 3.0])
    _, w = methods.create("fixed", num_tasks=3, weights=[0.5, 0.0, 2.0]).task_terms(losses)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, 2.0]))
    _, w = methods.create("fixed", num_tasks=3).task_terms(losses)
    torch.testing.assert_close(w, torch.ones(3))
    with pytest.raises(Exception, match="weights"):
        methods.create("fixed", num_tasks=3, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="not all 0"):
        methods.create("fixed", num_tasks=2, weights=[0.0, 0.0])


def test_weight_grid_two_tasks_lattice_and_sample():
    assert fr.weight_grid(2, points=5) == [(0.0, 2.0), (0.5, 1.5), (1.0, 1.0), (1.5, 0.5), (2.0, 0.0)]
    g3 = fr.weight_grid(3)  # lattice step 1/6: C(8, 2) = 28 points, centre = EW
    assert len(g3) == 28 and (1.0, 1.0, 1.0) in g3 and (3.0, 0.0, 0.0) in g3
    assert all(math.isclose(sum(w), 3, abs_tol=1e-3) for w in g3)
    g11 = fr.weight_grid(11, max_points=30)  # no lattice fits: centre, midpoints, Dirichlet draws
    assert len(g11) == 30 and g11[0] == (1.0,) * 11 and g11 == fr.weight_grid(11, max_points=30)
    assert fr.tag((0.5, 1.5)) == "_w0.5-1.5"


def test_pareto_mask():
    v = np.array([[1.0, 1.0], [2.0, 0.0], [0.5, 0.5], [1.0, 1.0], [0.0, 3.0]])
    assert fr.pareto_mask(v).tolist() == [True, True, False, True, True]


def test_collect_marks_methods_beyond_the_front():
    rows = []
    for folder, trained, tagv, vals in [("fixed_w0-2", "fixed", "_w0-2", [(0, 3), (0, 3)]),
                                        ("fixed_w2-0", "fixed", "_w2-0", [(3, 0), (3, 0)]),
                                        ("fixed_w1-1", "fixed", "_w1-1", [(1, 1), (1, 1)]),
                                        ("good", "good", "", [(2, 2), (2.2, 2.4)]),
                                        ("bad", "bad", "", [(0.5, 0.5)])]:
        for s, (a, b) in enumerate(vals):
            rows.append({"method": folder, "trained": trained, "tag": tagv, "seed": s, "delta_p/a": a,
                         "delta_p/b": b})
    front, ms = fr.collect(pd.DataFrame(rows), ["a", "b"])
    assert front["pareto"].tolist() == [True, True, True]
    ms = ms.set_index("method")
    assert ms.loc["good", "beyond_front"] and ms.loc["good", "dominated_by"] == ""
    assert ms.loc["bad", "dominated_by"] == "fixed_w1-1" and not ms.loc["bad", "beyond_front"]
    assert ms.loc["good", "seeds"] == 2 and ms.loc["good", "a_low"] < 2.1 < ms.loc["good", "a_high"]
    assert math.isnan(ms.loc["bad", "a_low"])  # one seed: no interval


def test_tiny_toy_front_writes_csv_and_plot_and_relaunch_skips(tmp_path, capsys):
    out = tmp_path / "front"
    argv = ["--bench", "toy", "--seeds", "0", "--points", "3", "--methods", "ew", "--out", str(out),
            f"run.root={tmp_path / 'runs'}", "logger=none", "trainer.progress=false", "trainer.epochs=1",
            "benchmark.build.steps_per_epoch=5", "benchmark.protocol.report=[last10]"]
    assert fr.main(argv) == 0
    front = pd.read_csv(out / "toy_front.csv")
    assert front["method"].tolist() == ["fixed_w2-0", "fixed_w1-1", "fixed_w0-2"]
    ms = pd.read_csv(out / "toy_methods.csv")
    assert ms["method"].tolist() == ["ew"]
    # EW is the centre of the grid: the same run as weights (1, 1)
    assert np.isclose(ms.loc[0, "f1"], front.loc[1, "f1"]) and np.isclose(ms.loc[0, "f2"], front.loc[1, "f2"])
    assert ms.loc[0, "dominated_by"].startswith("fixed_w") and not ms.loc[0, "beyond_front"]  # matched by w = (1, 1)
    assert (out / "toy_front.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert fr.main(argv) == 0
    assert capsys.readouterr().out.count("is finished (summary.json exists); skipping") == 4


def test_tiny_three_task_synthetic_front_draws_task_pairs(tmp_path):
    out = tmp_path / "front"
    argv = ["--bench", "synthetic", "--seeds", "0", "--max-points", "3", "--methods", "ew", "--out", str(out),
            f"run.root={tmp_path / 'runs'}", "logger=none", "trainer.progress=false", "trainer.epochs=1",
            "benchmark.build.n_train=128", "benchmark.build.n_val=64", "benchmark.build.n_test=64"]
    assert fr.main(argv) == 0
    front = pd.read_csv(out / "synthetic_front.csv")
    assert len(front) == 3 and {"w_t0", "w_t1", "w_t2", "t0", "t1", "t2", "pareto"} <= set(front.columns)
    ms = pd.read_csv(out / "synthetic_methods.csv")
    assert ms["method"].tolist() == ["ew"] and ms.loc[0, "seeds"] == 1
    assert (out / "synthetic_front.png").read_bytes()[:4] == b"\x89PNG"
