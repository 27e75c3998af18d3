"""The GPU proof (`make gpu-proof`, mtl.perf.proof) and the profile (mtl.perf.profile), rehearsed on
the CPU at tiny sizes so that a lent GPU's minutes are never spent on a typo."""
from __future__ import annotations

import csv

import pytest


def test_profile_tiny_on_cpu_reports_time_flops_and_conv_share():
    from mtl.perf import profile

    workload = profile.nyuv2_workload("tiny")
    df = profile.run(workload, profile.CURATED[:1], ("ew",), "cpu", steps=1, profile_steps=1, log=lambda s: None)
    row = df.iloc[0]
    assert row.status == "ok", row.status
    assert row.step_ms > 0 and row.gflop_per_step > 0 and row.achieved_tflops > 0
    assert 0 < row.conv_share <= 1 and "conv" in row.top_kernels.lower()
    assert "| setting |" in profile.markdown(df)


def test_profile_budget_skips_the_rest():
    from mtl.perf import profile

    workload = profile.nyuv2_workload("tiny")
    df = profile.run(workload, profile.CURATED[:2], ("ew",), "cpu", steps=1, profile_steps=1, budget_s=0.0,
                     log=lambda s: None)
    assert set(df.status) == {"skipped: time budget"}


def test_real_proof_refuses_without_cuda(capsys):
    import torch

    from mtl.perf import proof

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert proof.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err


def test_dry_run_of_the_whole_proof(tmp_path):
    """Every stage end to end on the CPU: profile, step table, packed QM9 workers, three trainings
    at once, a SIGUSR1 kill-and-resume; one CSV and one markdown report."""
    from mtl.perf import proof

    assert proof.main(["--dry-run", "--out-dir", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "gpu_proof_cpu_dry_run.csv").open()))
    stages = {r["stage"] for r in rows}
    assert stages == {"profile", "steps", "throughput", "training", "resume"}, stages
    assert not [r for r in rows if r["metric"] == "status"], [r for r in rows if r["metric"] == "status"]
    got = {(r["stage"], r["name"], r["metric"]): r["value"] for r in rows}
    for m in ("ew", "uw", "db_mtl"):
        assert ("training", m, "delta_p_vs_paper_stl") in got
    # a resumed QM9 run matches to float rounding (seen on the CPU: 1e-8 relative), not always bitwise:
    # two uninterrupted CPU runs of it differ too (scatter sums under threads)
    assert got[("resume", "db_mtl", "same_steps")] == "True"
    assert float(got[("resume", "db_mtl", "max_relative_metric_difference")]) < 1e-6
    assert float(got[("throughput", "2 packed", "steps_per_s_per_run")]) > 0
    md = (tmp_path / "gpu_proof_cpu_dry_run.md").read_text()
    for title in ("1. Profile", "2. Step table", "3. QM9 throughput", "4. QM9 training", "5. Kill-and-resume"):
        assert title in md
