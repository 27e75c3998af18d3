"""DB-MTL sweeps: the experiment grids are the paper's, tags separate the points, a tiny sweep on
synthetic writes the CSV and box plot and a rerun skips finished points."""
from __future__ import annotations

import pandas as pd
from omegaconf import OmegaConf

from mtl.campaigns import sweeps as sweep
from mtl.config.compose import compose
from mtl.campaigns.workflows import load_experiment, sweep_params


def test_beta_grid_is_fig5():
    exp = load_experiment("sweep_beta")
    points = sweep_params(exp)["sweep_point"]
    assert len(points) == 19 and points[0] == "beta0.0" and points[-1] == "beta0.9_sqrtk"
    cfg = compose(["experiment=sweep_beta", "sweep_point=beta0.3_sqrtk"])
    assert (cfg.method.name, cfg.method.beta, cfg.method.beta_sigma) == ("db_mtl", 0.3, 0.5)
    assert cfg.run.dir.endswith("synthetic/db_mtl_beta0.3_sqrtk/seed0")
    assert compose(["experiment=sweep_beta", "sweep_point=beta0.0"]).method.beta_sigma == 0.0


def test_alpha_grid_is_fig6_and_inv_t_is_per_benchmark():
    exp = load_experiment("sweep_alpha")
    points = sweep_params(exp)["sweep_point"]
    assert set(points) == {"alpha0.01", "alpha0.05", "alpha0.1", "alpha0.5", "alpha1", "alpha5", "alpha10",
                           "alphainvT", "alphamin", "alphamax", "alphamean", "alphamedian"}
    assert sweep.point_overrides(exp, "qm9", []) == [f"sweep_points.alphainvT.alpha={1 / 11!r}"]
    assert sweep.point_overrides(exp, "cityscapes", []) == ["sweep_points.alphainvT.alpha=0.5"]
    cfg = compose(["experiment=sweep_alpha", "benchmark=officehome", "sweep_point=alphainvT",
                   *sweep.point_overrides(exp, "officehome", [])])
    assert cfg.method.alpha == 0.25 and cfg.run.tag == "_alphainvT"
    assert OmegaConf.to_container(compose(["experiment=sweep_alpha", "sweep_point=alphamedian"]).method,
                                  resolve=True)["alpha"] == "median"


def test_tiny_beta_sweep_writes_csv_and_plot(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "sweeps"
    argv = ["beta", "--bench", "synthetic", "--seeds", "0", "--points", "beta0.0,beta0.5_sqrtk", "--out", str(out),
            f"run.root={runs}", "logger=none", "trainer.epochs=1", "benchmark.build.n_train=128",
            "trainer.max_steps_per_epoch=2", "trainer.progress=false"]
    assert sweep.main(argv) == 0
    df = pd.read_csv(out / "synthetic_beta.csv")
    assert df["point"].tolist() == ["beta0.0", "beta0.5_sqrtk"]
    assert df["beta_sigma"].tolist() == [0.0, 0.5] and (df["status"] == "ok").all()
    assert df["delta_p"].notna().all() and {"delta_p/t0", "delta_p/t2"} <= set(df.columns)
    assert (runs / "synthetic" / "db_mtl_beta0.5_sqrtk" / "seed0" / "summary.json").exists()
    assert "(1 seed: no interval)" in (out / "synthetic_beta_summary.md").read_text()
    png = out / "synthetic_beta.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert sweep.main(argv) == 0  # second time: both points are finished and skipped
    assert capsys.readouterr().out.count("is finished (summary.json exists); skipping") == 2


def test_sweep_summary_intervals_and_paired_verdicts():
    # beta0.0 beats the default beta0.9 by 10, 11, 9 on seeds 0-2 (p = 0.0066, Holm x2 = 0.013);
    # beta0.5 differs from it by 1, -1, 0.5 (no detectable difference); beta0.1 has one seed
    rows = [("beta0.9", s, v) for s, v in enumerate([-49.0, -47.0, -50.0])]
    rows += [("beta0.0", s, v) for s, v in enumerate([-39.0, -36.0, -41.0])]
    rows += [("beta0.5", s, v) for s, v in enumerate([-48.0, -48.0, -49.5])]
    rows += [("beta0.1", 0, -45.0)]
    df = pd.DataFrame([{"point": p, "seed": s, "delta_p": v, "status": "ok"} for p, s, v in rows])
    summ = sweep.summary(df, ["beta0.0", "beta0.1", "beta0.5", "beta0.9"], default="beta0.9").set_index("point")
    assert summ.loc["beta0.0", "verdict"] == "better than beta0.9"
    assert summ.loc["beta0.0", "vs_default"].startswith("+10.00 [")
    assert summ.loc["beta0.5", "verdict"] == "no detectable difference at 3 seeds"
    assert summ.loc["beta0.1", "verdict"] == "1 seed: no test" and summ.loc["beta0.1", "interval"] == \
        "-45.00 (1 seed: no interval)"
    assert summ.loc["beta0.9", "verdict"] == "(default)"
    assert summ.loc["beta0.0", "p_best"] > 0.9
    md = sweep.summary_markdown(sweep.summary(df, ["beta0.0", "beta0.9"], default="beta0.9"))
    assert "| beta0.0 | 3 | -38.67 [" in md and "better than beta0.9" in md
