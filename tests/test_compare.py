"""`make compare`: a new method's Δp ranked among our runs, or among the paper's rows when we have none."""
from __future__ import annotations

import json

import pytest

from mtl.campaigns import compare


def fake_run(root, bench, name, metrics, seed=0):
    d = root / bench / name / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"method": name, "tag": "", "seed": seed, "metrics": metrics}))


def test_rank_against_paper_rows(tmp_path, capsys):
    # a "new" method with the DB-MTL row's numbers except a slightly better mIoU: ranks first
    row = {"segmentation": {"mIoU": 54.92, "PAcc": 75.60}, "depth": {"AErr": 0.3768, "RErr": 0.1557},
           "normal": {"Mean": 21.97, "MED": 15.37, "Within11.25": 38.43, "Within22.5": 64.81, "Within30": 75.24}}
    fake_run(tmp_path, "nyuv2", "mine", row)
    assert compare.main(["--method", "mine", "--bench", "nyuv2", "--no-run", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # Δp by hand: seg ((54.92-53.50)/53.50 + (75.60-75.39)/75.39)/2, depth -((0.3768-0.3926)/0.3926
    # + (0.1557-0.1605)/0.1605)/2, normal the 5 signed ratios / 5; mean of the three = +1.455 %
    assert ("mine Δp = +1.46 % (1 seed: no interval) over 1 seed(s); rank 1 of 22 by mean Δp against paper "
            "baselines") in out
    assert "No baseline has our own runs" in out


def test_rank_against_our_runs(tmp_path, train, capsys):
    fake_run(tmp_path / "runs", "synthetic", "ew", {"t0": {"mae": 0.1}, "t1": {"mae": 1.0}, "t2": {"mae": 10.0}})
    fake_run(tmp_path / "runs", "synthetic", "uw", {"t0": {"mae": 1e6}, "t1": {"mae": 1e6}, "t2": {"mae": 1e6}})
    argv = ["--method", "db_mtl", "--bench", "synthetic", "--seeds", "0", "--root", str(tmp_path / "runs"),
            f"run.root={tmp_path / 'runs'}", "logger=none", "trainer.epochs=1", "benchmark.build.n_train=128",
            "trainer.max_steps_per_epoch=2", "trainer.progress=false"]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "runs" / "synthetic" / "db_mtl" / "seed0" / "summary.json").exists()
    # EW sits exactly on the reference (Δp 0), UW far worse: a 1-epoch DB-MTL lands in between
    assert "rank 2 of 3 by mean Δp against ours baselines" in out
    assert "DB-MTL vs EW: 1 seed: no test" in out


def test_unknown_against_paper_without_table(tmp_path):
    fake_run(tmp_path, "synthetic", "mine", {"t0": {"mae": 0.1}, "t1": {"mae": 1.0}, "t2": {"mae": 10.0}})
    with pytest.raises(RuntimeError, match="no paper table"):
        compare.main(["--method", "mine", "--bench", "synthetic", "--no-run", "--root", str(tmp_path),
                      "--against", "paper"])


def test_paired_comparison_verdicts(tmp_path, capsys):
    """Three seeds each on synthetic, every task at (1 - Δ/100) x its reference MAE so that Δp = Δ:
    'mine' is ~10 points better than EW on every seed -> better; ~3 points better than UW with
    seed noise of several points -> no detectable difference; Holm corrects over both."""
    from mtl.benchmarks import spec

    ref = spec("synthetic").reference

    def run(name, seed, dp):
        f = 1 - dp / 100
        fake_run(tmp_path, "synthetic", name, {t: {"mae": ref[t]["mae"] * f} for t in ref}, seed=seed)
    for seed, (ew, uw, mine) in enumerate([(0.0, 5.0, 10.0), (1.0, 12.0, 11.5), (-1.0, 1.0, 9.0)]):
        run("ew", seed, ew), run("uw", seed, uw), run("mine", seed, mine)
    assert compare.main(["--method", "mine", "--bench", "synthetic", "--no-run", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mine Δp = +10.17 % [" in out
    # vs EW: differences 10, 10.5, 10 -> mean 10.17, s 0.289, t = 61.0, p = 2.7e-4; Holm: x2
    assert "mine vs EW: better" in out
    # vs UW: differences 5, -0.5, 8 -> mean 4.17, s 4.31, t = 1.67, p = 0.236: Holm x1 = 0.236
    assert "mine vs UW: no detectable difference at 3 seeds" in out
    assert "Holm-corrected over 2 baseline(s)" in out and "n<6" in out and "Seed plan" in out
    res, _ = compare.paired_report(compare.build_table("synthetic", tmp_path), "mine")
    res = res.set_index("baseline")
    uw, ew = res.loc["UW"], res.loc["EW"]
    assert uw["diff"] == pytest.approx(25 / 6) and uw["diff_sd"] == pytest.approx(4.3108, abs=1e-4)
    t = (25 / 6) / (4.3108 / 3 ** 0.5)
    from scipy import stats as st
    assert uw["p"] == pytest.approx(2 * st.t.sf(t, 2), abs=1e-4)
    # Holm: the smaller p (EW) is doubled, the larger (UW) stays (step-down, m - 1 = 1)
    assert ew["p_holm"] == pytest.approx(2 * ew["p"]) and uw["p_holm"] == pytest.approx(uw["p"])
