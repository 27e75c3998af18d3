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
    png = out / "synthetic_beta.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert sweep.main(argv) == 0  # second time: both points are finished and skipped
    assert capsys.readouterr().out.count("is finished (summary.json exists); skipping") == 2
