"""`make demo`'s script end to end at toy scale: parallel training processes, Δp table with
per-task Δp, bar plot, per-task heat map, balancing curves, next steps."""
import pytest

from mtl.campaigns import demo
from mtl.campaigns import demo_stability as stab


def test_demo_prints_table_and_writes_figures(tmp_path, capsys):
    tables = tmp_path / "tables"
    demo.main(["--benchmark", "synthetic", "--methods", "db_mtl", "uw", "--curves", "db_mtl", "uw",
               "--seeds", "0", "1", "--jobs", "2", "--root", str(tmp_path / "runs"), "--tables", str(tables),
               "trainer.epochs=2", "benchmark.build.n_train=128"])
    out = capsys.readouterr().out
    assert "| uw |" in out and "| db_mtl |" in out and "Δp" in out
    assert "| t0 | t1 | t2 |" in out  # per-task Δp columns
    # uw: two seeds -> an interval; db_mtl (--slow-seeds default 0): one seed, said so
    assert "| db_mtl | " in out and "(1 seed: no interval) |" in out and "Which differences are real" in out
    assert "uw and db_mtl" not in out and "db_mtl: 1 seed: no interval, no test" in out
    assert "make reproduce-qm9" in out and "make tables" in out and "make compare" in out
    figures = ["demo_synthetic.png", "demo_synthetic_per_task.png", "demo_synthetic_balancing.png"]
    for name in ["demo_synthetic.md", *figures]:
        assert str(tables / name) in out
    for name in figures:
        assert (tables / name).stat().st_size > 5000
    # each run trained in its own process, logging to a file: plain progress lines, no bar redraws
    log = (tables / "demo_logs" / "synthetic_db_mtl_seed0.log").read_text()
    assert "\r" not in log and "ms/step" in log and "[mtl] epoch 1 | val Δp" in log


def test_balancing_plot_has_a_panel_per_logged_diagnostic(tmp_path, monkeypatch):
    for name, keys in (("a", ["method/buffer_coeffs", "method/grad_norms"]), ("b", ["method/weights"]),
                       ("c", ["method/solver_failures"])):
        d = tmp_path / name
        d.mkdir()
        rows = [{"epoch": e, "train_loss": {"x": 1.0, "y": 2.0}, **{k: [1.0 + e, 0.5] for k in keys}}
                for e in range(3)]
        (d / "metrics.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in rows))
    panels = []
    import matplotlib.figure

    real = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: (panels.append([ax.get_title() for ax in fig.axes]), real(fig, *a, **k)))
    runs = {n: str(tmp_path / n) for n in "abc"}
    out = demo.balancing_plot(runs, tmp_path / "bal.png", "t")
    assert out.exists()
    assert panels[0] == ["a: task weights (on EMA gradients)", "a: gradient norm ‖g_t‖", "b: task weights"]


def test_failed_run_stops_with_its_log(tmp_path):
    with pytest.raises(SystemExit, match="1 demo run\\(s\\) failed; the first, no_such_method seed 0"):
        demo.train_all("synthetic", ["no_such_method"], [0], root=str(tmp_path / "runs"), logs=tmp_path / "logs")


def test_stability_checks():
    import pandas as pd

    def table(orders):
        rows = [{"budget": b, "seed": s, "method": m, "rank": r + 1}
                for (b, s), order in orders.items() for r, m in enumerate(order)]
        return pd.DataFrame(rows)

    ok = table({("1x", 0): "abc", ("1x", 1): "abc", ("2x", 0): "abc"})
    assert [passed for _, passed, _ in stab.checks(ok, [0, 1])] == [True, True, True]
    middle_swapped = table({("1x", 0): "abcd", ("1x", 1): "acbd", ("2x", 0): "acbd"})
    assert [passed for _, passed, _ in stab.checks(middle_swapped, [0, 1])] == [True, True, False]
    worst_differs = table({("1x", 0): "abc", ("1x", 1): "acb", ("2x", 0): "abc"})
    assert [passed for _, passed, _ in stab.checks(worst_differs, [0, 1])] == [True, False, True]


def test_stability_closest_pairs():
    import pandas as pd

    df = pd.DataFrame({"budget": ["1x"] * 3, "seed": [0] * 3, "method": ["a", "b", "c"],
                       "delta_p": [-1.0, -1.5, -9.0], "rank": [1, 2, 3]})
    assert stab.closest_pairs(df) == ["1x seed 0: a - b 0.5 points"]


def test_demo_default_benchmark_tiny(tmp_path, capsys):
    """The default path (qm9_small: real QM9 molecules on bond graphs, the default methods and curves)
    shrunk to two steps per run on a 2,000-molecule build."""
    tables = tmp_path / "tables"
    demo.main(["--seeds", "0", "--root", str(tmp_path / "runs"), "--tables", str(tables), "trainer.epochs=1",
               "trainer.max_steps_per_epoch=2", f"benchmark.build.root={tmp_path / 'qm9'}",
               "benchmark.build.limit=2000", "benchmark.build.subset={train:32,val:16,test:16}"])
    out = capsys.readouterr().out
    for method in demo.DEFAULT_METHODS:
        assert f"| {method} |" in out
    assert "| mu | alpha | homo | lumo | r2 | zpve | U0 | U | H | G | cv |" in out
    assert (tables / "demo_qm9_small_balancing.png").stat().st_size > 5000


def _runs(rows):
    import pandas as pd

    return pd.DataFrame([{"method": m, "seed": s, "delta_p": v} for m, vals in rows.items()
                         for s, v in enumerate(vals)])


def test_significance_in_words():
    # uw - ew per seed: 3, 1, -1 (no detectable difference); uw - rlw: 11, 11, 10 and ew - rlw: 8, 10, 11
    # (paired t p = 0.001 and 0.008; Holm over the 3 pairs: 0.003 and 0.017 -> better)
    df = _runs({"uw": [-22.0, -20.0, -25.0], "ew": [-25.0, -21.0, -24.0], "rlw": [-33.0, -31.0, -35.0],
                "db_mtl": [-49.0]})
    words = demo.significance(df, ["uw", "ew", "rlw", "db_mtl"])
    assert words[0].startswith("uw and ew: no detectable difference at 3 seeds (paired Δp difference +1.0 [")
    assert "seeds would detect a 1.0-point gap with 80 % power" in words[0]
    assert words[1].startswith("uw better than rlw") and words[2].startswith("ew better than rlw")
    assert "Holm over 3 pairs" in words[3]
    assert words[4].startswith("db_mtl: 1 seed: no interval, no test (Δp -49.0; the seed-to-seed SD")


def test_beta_row_explains_db_mtl_only_when_the_gap_exceeds_the_noise():
    from mtl.report.tables import aggregate

    base = {"uw": [-22.0, -20.0, -25.0], "ew": [-25.0, -21.0, -24.0]}
    for b0, explains in ((-26.8, True), (-47.0, False)):
        df = _runs({**base, "db_mtl": [-49.2], "db_mtl_beta0.0": [b0]})
        df["benchmark"], df["delta_m"], df["wall_time_s"] = "qm9_small", -df["delta_p"], 1.0
        lines = demo.beta_lines(df, aggregate(df))
        assert "Δp -49.2 at β = 0.9, " + f"{b0:+.1f} at β = 0" in lines[0]
        assert ("the gradient EMA is what costs DB-MTL its place" in lines[1]) is explains
        assert ("β does not explain DB-MTL's place" in lines[1]) is not explains
    assert demo.beta_lines(_runs(base).assign(benchmark="b", delta_m=0.0, wall_time_s=1.0),
                           aggregate(_runs(base).assign(benchmark="b", delta_m=0.0, wall_time_s=1.0))) == []
    assert demo.seed_plan(["db_mtl", "db_mtl_beta0.0", "uw"], [0, 1, 2], [0]) == {
        "db_mtl": [0], "db_mtl_beta0.0": [0], "uw": [0, 1, 2]}
