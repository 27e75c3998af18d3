"""FLOP counts (mtl.perf.flops) and the FLOP columns of the step table (mtl.perf.step)."""
from __future__ import annotations

import pytest
import torch


def test_meta_count_equals_a_real_cpu_count():
    from mtl.perf import flops

    ws = flops.workloads("tiny")
    for name in ("nyuv2_deeplab", "office_resnet18"):
        meta, cpu = flops.count_workload(ws[name], "meta"), flops.count_workload(ws[name], "cpu")
        assert meta == cpu and meta["forward"] > 0, (name, meta, cpu)
        # T passes from the stacked losses cost T full backward passes (every head sees zeros)
        assert cpu["backward_loop"] == ws[name].num_tasks * cpu["backward_ew"]
        assert cpu["backward_loop_own"] < cpu["backward_loop"]


def test_count_of_a_linear_layer_is_2mnk():
    from mtl.perf.flops import count

    lin = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(16, 8)
    c = count(lin, lambda m, b: m(b).mean(0)[:2], x, 2)
    assert c["forward"] == 2 * 16 * 8 * 4
    assert c["backward_ew"] == 2 * 16 * 8 * 4  # weight gradient only (x needs none)


def test_peaks_have_sources_and_the_cpu_measures_a_matmul():
    from mtl.perf.flops import PEAKS, chip_peak, peak_tflops

    assert chip_peak("NVIDIA H100 80GB HBM3")[0].startswith("H100 SXM")
    assert chip_peak("NVIDIA H200")[0] == "H200" and chip_peak("NVIDIA H200 NVL")[0] == "H200 NVL"
    for entry in PEAKS.values():
        assert entry["bf16"] > entry["tf32"] > entry["fp32"] and entry["source"]
    peak, source = peak_tflops("cpu", "fp32")
    assert peak > 0 and source.startswith("measured matmul")


def test_step_table_reports_flops_beside_the_time():
    from mtl.perf import step

    df, skipped = step.run(step.build_workload("mlp"), ["db_mtl"], reps=1, warmup=1, log=lambda s: None, peak=1.0)
    assert not skipped
    rows = df.set_index("method")
    for col in ("gflop_per_step", "achieved_tflops", "peak_fraction"):
        assert (rows[col] > 0).all(), rows[col]
    # the bare loop's T backward passes are more work than EW's one
    assert rows.loc["bare_loop", "gflop_per_step"] > rows.loc["ew", "gflop_per_step"]
    assert rows.loc["ew", "peak_fraction"] == pytest.approx(rows.loc["ew", "achieved_tflops"], rel=1e-2)


def test_campaign_cost_reads_the_protocol_from_the_configs():
    from mtl.benchmarks.paper import campaign_methods
    from mtl.perf import cost

    p = cost.protocol("nyuv2")
    assert (p.epochs, p.steps_per_epoch, p.tasks, p.seeds, p.stl) == (200, 795 // 8, 3, ["0", "1", "2"], True)
    assert p.methods == campaign_methods()
    q = cost.protocol("qm9")
    assert (q.epochs, q.steps_per_epoch, q.tasks) == (300, -(-110_831 // 128), 11)
    # the arithmetic: every step 100 ms -> runs x epochs x steps x 0.1 s, plus the evaluation
    flat = {"ew": 100.0, "bare_loop": 100.0, **{m: 100.0 for m in p.methods}}
    c = cost.campaign_cost("nyuv2", measured=flat)
    runs = len(p.methods) * 3 + 3 * 3
    assert c.runs == runs
    assert c.train_hours == pytest.approx(runs * 200 * 99 * 0.1 / 3600, rel=1e-9)
    assert 0 < c.eval_hours < c.train_hours
    committed = cost.campaign_cost("nyuv2")
    assert committed.per_method_ms["db_mtl"][1] == "measured" and committed.per_method_ms["ew"][1] == "measured"
    assert 40 < committed.gpu_hours < 120  # ~60 H100-hours of training by the arithmetic
    assert "reproduce-cityscapes" in cost.markdown(("cityscapes",))


def test_speed_key_fast_and_exact(tmp_path, train):
    """trainer.speed=fast: autotuned cuDNN, channels_last, TF32 matmuls, recorded in the runtime;
    exact (the default) leaves the papers' deterministic setting; a typo is one line."""
    import json

    from mtl.errors import InvalidValue
    from mtl.run.device import speed_settings

    assert speed_settings("exact", True, False) == {"speed": "exact", "deterministic": True, "channels_last": False,
                                                    "matmul_precision": "highest"}
    assert speed_settings("fast", True, False)["deterministic"] is False
    with pytest.raises(InvalidValue, match="exact"):
        speed_settings("fastest", True, False)
    try:
        run_dir = train(["benchmark=synthetic", "benchmark.build.n_train=64", "trainer.epochs=1",
                         "run.checkpoint=false", "trainer.speed=fast"])
        s = json.loads((run_dir / "summary.json").read_text())
        assert s["speed"] == "fast" and s["cudnn_deterministic"] is False and s["channels_last"] is True
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True


def test_runs_from_before_trainer_speed_resume_as_exact():
    from mtl.run.resume import changed_keys

    stored = "trainer:\n  deterministic: true\n"
    assert changed_keys(stored, {"trainer": {"deterministic": True, "speed": "exact"}}) == []
    assert changed_keys(stored, {"trainer": {"deterministic": True, "speed": "fast"}}) == \
        [("trainer.speed", "<absent>", "fast")]
