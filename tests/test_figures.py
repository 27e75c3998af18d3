"""Every figure rendered on tiny runs: its size in pixels, its axis labels, its legend entries, seed
counts and intervals (issue #21, item 8)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mtl.report import plots  # noqa: E402
from mtl.report.tables import build_table  # noqa: E402

TINY = ["benchmark=synthetic", "logger=none", "trainer.epochs=2", "trainer.progress=false",
        "benchmark.build.n_train=128", "benchmark.build.n_val=64", "benchmark.build.n_test=64"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from mtl.run.entry import run

    root = tmp_path_factory.mktemp("runs")
    for method, seeds in (("ew", (0, 1)), ("uw", (0,))):
        for s in seeds:
            run([*TINY, f"method={method}", f"seed={s}", f"run.root={root}"])
    return build_table("synthetic", root)


def pixels(path) -> tuple[int, int]:
    h, w = mpimg.imread(path).shape[:2]
    return w, h


def legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


def check_size(fig, tmp_path, name, max_w=3000, max_h=2500):
    path = plots._save(fig, tmp_path / f"{name}.png")
    w, h = pixels(path)
    assert 400 <= w <= max_w and 250 <= h <= max_h, (name, w, h)
    return w, h


def test_delta_p_per_task_bars(table, tmp_path):
    fig = plots.delta_p_per_task_figure(table)
    ax = fig.axes[0]
    assert ax.get_ylabel() and ax.get_xlabel()
    assert legend_texts(fig) == ["t0", "t1", "t2"]
    colours = {tuple(c.patches[0].get_facecolor()) for c in ax.containers if hasattr(c, "patches")}
    assert len(colours) == 3  # one colour per task
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert any("(2 seeds)" in t for t in ticks) and any("(1 seed)" in t for t in ticks)
    assert "95 % t-interval" in ax.get_title()
    fig.canvas.draw()  # the legend sits right of the axes: it covers no bar
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    check_size(fig, tmp_path, "bars")


def test_training_curves_grid(table, tmp_path):
    fig = plots.training_curves_figure(table)
    axes = visible_axes(fig)
    assert len(axes) == 4  # 3 train-loss panels + Δp, in one row of a 4-column grid
    assert all(ax.get_ylabel() and ax.get_xlabel() == "epoch" for ax in axes)
    texts = legend_texts(fig)
    assert {"EW (2 seeds)", "UW (1 seed)", "test Δp", "val Δp"} <= set(texts)
    assert any(len(ax.collections) for ax in axes)  # ew's 95 % band
    w, h = check_size(fig, tmp_path, "curves")
    assert w / h < 6  # no more 3840x300 strips


def test_many_task_curves_wrap_into_rows():
    fig, axes = plots._grid(12)
    assert len(axes) == 12 and fig.get_size_inches()[0] <= 16.5 and fig.get_size_inches()[1] >= 9
    plt.close(fig)


def test_task_weights_one_colour_per_task(table, tmp_path):
    fig = plots.task_weights_figure(table)
    axes = visible_axes(fig)
    assert {ax.get_title() for ax in axes} == {"EW (2 seeds)", "UW (1 seed)"}
    assert all(ax.get_ylabel() == "weight" and ax.get_xlabel() == "epoch" for ax in axes)
    assert legend_texts(fig) == ["t0", "t1", "t2"]
    assert len({tuple(np.round(line.get_color(), 3)) if not isinstance(line.get_color(), str) else line.get_color()
                for line in axes[0].lines}) == 3
    check_size(fig, tmp_path, "weights")


def test_sweep_ticks_are_values_families_apart_one_seed_is_a_point(tmp_path):
    rows = [{"point": f"beta{b}", "beta": b, "beta_sigma": 0.0, "seed": s, "delta_p": b + s}
            for b in (0.0, 0.5, 0.9) for s in range(5)]
    rows += [{"point": f"beta{b}_sqrtk", "beta": b, "beta_sigma": 0.5, "seed": 0, "delta_p": b} for b in (0.1, 0.5)]
    df = pd.DataFrame(rows)
    order = list(df["point"].drop_duplicates())
    fig = plots.sweep_figure(df, order=order, title="synthetic: DB-MTL β")
    a, b = visible_axes(fig)
    assert (a.get_title(), b.get_title()) == ("constant β", "β / √k")
    assert [t.get_text() for t in a.get_xticklabels()] == ["0", "0.5", "0.9"]
    assert [t.get_text() for t in b.get_xticklabels()] == ["0.1", "0.5"]
    assert a.get_xlabel() == "β" and a.get_ylabel() == "Δp (%)"
    assert len([ln for ln in a.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 2]) > 0  # boxes (5 seeds)
    assert not any(len(ln.get_xdata()) == 2 and ln.get_linestyle() == "-" and ln.get_color() == "C0" for ln in b.lines)
    assert {"seed", "mean, 95 % t-interval"} <= set(legend_texts(fig))
    assert "1–5 seeds per point" in fig._suptitle.get_text()
    check_size(fig, tmp_path, "sweep")


def test_alpha_sweep_splits_constants_from_rules():
    df = pd.DataFrame([{"point": p, "alpha": a, "seed": 0, "delta_p": 1.0}
                       for p, a in (("alpha0.1", 0.1), ("alpha1", 1.0), ("alphamax", "max"), ("alphamin", "min"))])
    fams = plots.sweep_families(df, list(df["point"]))
    assert [(f[0], [t for _, t in f[2]]) for f in fams] == [("constant α_k = c", ["0.1", "1"]),
                                                            ("α_k from the gradient norms", ["max", "min"])]


def test_front_figure(tmp_path):
    from mtl.campaigns.front import collect

    rows = [{"method": f, "trained": tr, "tag": tg, "seed": s, "delta_p/a": a + s * 0.1, "delta_p/b": b}
            for f, tr, tg, a, b in (("fixed_w0-2", "fixed", "_w0-2", 0, 3), ("fixed_w2-0", "fixed", "_w2-0", 3, 0),
                                    ("ew", "ew", "", 1.5, 1.5)) for s in (0, 1)]
    rows.append({"method": "uw", "trained": "uw", "tag": "", "seed": 0, "delta_p/a": 1.0, "delta_p/b": 1.0})
    front, ms = collect(pd.DataFrame(rows), ["a", "b"])
    fig = plots.front_figure(front, ms, ["a", "b"], benchmark="toy")
    ax = visible_axes(fig)[0]
    assert ax.get_xlabel() == "Δp of a (%) ↑" and ax.get_ylabel() == "Δp of b (%) ↑"
    assert {"ew (2 seeds)", "uw (1 seed)", "front of the fixed weights"} <= set(legend_texts(fig))
    check_size(fig, tmp_path, "front")


def test_toy_figure_labels_pareto_set_and_default_out(tmp_path):
    import torch

    from mtl.campaigns import toy_trajectories as toy

    ps = toy.pareto_set(n=120)
    assert len(ps) > 10 and ps.abs().max() <= 10
    fig = toy.figure({"ew": [torch.zeros(3, 2)], "mgda": [torch.ones(3, 2)]}, 1.0)
    axes = visible_axes(fig)
    assert all(ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2" for ax in axes)
    assert "Pareto set (grid)" in legend_texts(fig)
    check_size(fig, tmp_path, "toy")
    assert toy.DEFAULT_OUT.parts[0] != "results"  # running it does not overwrite the committed figure
