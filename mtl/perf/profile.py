"""Where the NYUv2 step's time goes: a `torch.profiler` breakdown per execution setting.

    python -m mtl.perf.profile --device cuda                  # full size (288x384, batch 8), curated grid
    python -m mtl.perf.profile --device cuda --grid full      # every combination (24 per method)
    python -m mtl.perf.profile --size tiny --device cpu       # the CPU check (tests)

For each setting (precision fp32/TF32 | bf16 | fp16, cuDNN deterministic on/off, NCHW or
channels_last, eager or `torch.compile` of the forward; the autotuned rows also run fp32 matmuls as
TF32, as `trainer.speed=fast` does) and each method (EW, DB-MTL), one
`mtl.perf.step.Runner` (the trainer's step: forward, losses, method.backward, optimizer step) is
warmed up, timed (median of `--steps` synchronised steps), then profiled over `--profile-steps`
steps. Reported per row: step ms, achieved TFLOP/s and the fraction of the chip's peak (FLOPs
counted once per method, `mtl.perf.flops`), the convolutions' share of kernel time, the device's
idle share of the profiled wall time (gaps between kernels: launch overhead, host syncs, Python;
CUDA only) and the top kernels by device time (CPU: the top ops by self CPU time).

Writes <out>/profile_<workload>_<device>.csv and prints a markdown table. `--budget-s` stops
starting new settings once spent (the rest are listed as skipped), so a lent GPU's minutes hold.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mtl.paths import project_root

CURATED = [  # in order of priority (a budget cuts from the end): the papers' setting, trainer.speed=fast
    # in fp32 and bf16, compiled, then each factor on its own
    {"precision": "fp32", "deterministic": True, "channels_last": False, "compile": None},
    {"precision": "fp32", "deterministic": False, "channels_last": True, "compile": None},
    {"precision": "bf16", "deterministic": False, "channels_last": True, "compile": None},
    {"precision": "bf16", "deterministic": False, "channels_last": True, "compile": "inductor"},
    {"precision": "fp32", "deterministic": False, "channels_last": False, "compile": None},
    {"precision": "bf16", "deterministic": True, "channels_last": False, "compile": None},
    {"precision": "bf16", "deterministic": False, "channels_last": False, "compile": None},
    {"precision": "fp16", "deterministic": False, "channels_last": True, "compile": None},
    {"precision": "fp32", "deterministic": False, "channels_last": True, "compile": "inductor"},
]
COMPILE_S = 60.0  # a compile setting starts only with this much of the budget left (compiling takes ~a minute)
CONV_MARKS = ("conv", "cudnn", "implicit_gemm", "fprop", "dgrad", "wgrad", "xmma", "winograd")


def full_grid(compile_backend: str = "inductor") -> list[dict[str, Any]]:
    return [{"precision": p, "deterministic": d, "channels_last": c, "compile": k}
            for p, d, c, k in itertools.product(("fp32", "bf16", "fp16"), (True, False), (False, True),
                                                (None, compile_backend))]


def label(s: dict[str, Any]) -> str:
    return (f"{s['precision']}{'/tf32' if s['precision'] == 'fp32' else ''} "
            f"{'det' if s['deterministic'] else 'autotune'} {'NHWC' if s['channels_last'] else 'NCHW'} "
            f"{'compile:' + s['compile'] if s['compile'] else 'eager'}")


def nyuv2_workload(size: str = "full"):
    """The NYUv2 DeepLabV3+ HPS workload of `mtl.perf.step` at full (288x384, batch 8) or tiny size."""
    import tempfile

    from mtl.benchmarks.nyuv2 import build
    from mtl.datasets import nyuv2
    from mtl.perf.step import benchmark_workload

    root = Path(tempfile.mkdtemp(prefix="profile_nyuv2_"))
    torch.manual_seed(0)
    if size == "full":
        path = nyuv2.write_fixture(root, n_train=16, n_val=2, height=288, width=384)
        bench = build(root=str(path), image_size=[288, 384], split_sizes=None, pretrained=False, num_workers=0,
                      train_batch_size=8, test_batch_size=8)
    else:
        path = nyuv2.write_fixture(root, n_train=4, n_val=1, height=32, width=64)
        bench = build(root=str(path), image_size=None, split_sizes=None, pretrained=False, num_workers=0,
                      backbone="tiny", dilated=False, head_channels=8, train_batch_size=2, test_batch_size=2)
    return benchmark_workload(bench, f"nyuv2_hps_{size}")


def _time(e, attr_new: str, attr_old: str) -> float:
    return float(getattr(e, attr_new, None) or getattr(e, attr_old, 0.0) or 0.0)


def breakdown(prof, device: torch.device, top: int = 5) -> dict[str, Any]:
    """Conv share, idle share and top kernels (ops on the CPU) of a finished profiler."""
    cuda = device.type == "cuda"
    rows = []
    for e in prof.key_averages():
        t = _time(e, "self_device_time_total", "self_cuda_time_total") if cuda else e.self_cpu_time_total
        if t > 0 and (cuda or e.key.startswith("aten::")):
            rows.append((e.key, t))
    if cuda:  # kernel names only: aten:: ops also carry device time of their kernels
        rows = [(k, t) for k, t in rows if not k.startswith("aten::")] or rows
    rows.sort(key=lambda r: -r[1])
    total = sum(t for _, t in rows) or 1.0
    conv = sum(t for k, t in rows if any(m in k.lower() for m in CONV_MARKS))
    out = {"kernel_ms_per_profile": round(total / 1e3, 2), "conv_share": round(conv / total, 3),
           "top_kernels": "; ".join(f"{k[:60]} {t / total:.0%}" for k, t in rows[:top])}
    if cuda:
        spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                       if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start)
        busy, cur_s, cur_e = 0.0, None, None
        for s, e in spans:
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    busy += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            busy += cur_e - cur_s
        wall = (spans[-1][1] - spans[0][0]) if spans else 0.0
        out["gpu_idle_share"] = round(1 - busy / wall, 3) if wall > 0 else None
    else:
        out["gpu_idle_share"] = None
    return out


def profile_setting(workload, method: str, setting: dict[str, Any], device: str, steps: int = 5,
                    profile_steps: int = 2, warmup: int = 2) -> dict[str, Any]:
    from mtl.perf.step import Runner
    from mtl.run.device import configure_determinism

    dev = torch.device(device)
    configure_determinism(setting["deterministic"])
    torch.set_float32_matmul_precision("highest" if setting["deterministic"] else "high")
    r = Runner(method, workload, "loop", device, setting["precision"], channels_last=setting["channels_last"],
               compile=setting["compile"])
    t0 = time.perf_counter()
    for _ in range(warmup):
        r.step()
    warm_s = time.perf_counter() - t0
    times = [r.step() for _ in range(steps)]
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(profile_steps):
            r.step()
    return {"step_ms": round(statistics.median(times) * 1e3, 2), "warmup_s": round(warm_s, 1),
            **breakdown(prof, dev)}


def run(workload, settings: list[dict[str, Any]], methods=("ew", "db_mtl"), device: str = "cpu",
        steps: int = 5, profile_steps: int = 2, budget_s: float | None = None, log=print):
    """Rows of the profile (one per setting x method); settings past the budget are 'skipped'."""
    import pandas as pd

    from mtl.perf.flops import peak_tflops
    from mtl.perf.step import Runner

    flops = {}
    for m in methods:  # FLOPs do not depend on the setting: counted once, fp32 eager
        flops[m] = Runner(m, workload, "loop", device).count_flops()
    start, rows = time.perf_counter(), []
    old = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    try:
        for s in settings:
            for m in methods:
                row = {"workload": workload.name, "method": m, "setting": label(s), **s,
                       "compile": s["compile"] or "-", "gflop_per_step": round(flops[m] / 1e9, 2)}
                spent = time.perf_counter() - start
                if budget_s is not None and (spent > budget_s or (s["compile"] and budget_s - spent < COMPILE_S)):
                    rows.append({**row, "status": "skipped: time budget"})
                    continue
                try:
                    res = profile_setting(workload, m, s, device, steps, profile_steps)
                    peak, source = peak_tflops(device, s["precision"])
                    achieved = flops[m] / (res["step_ms"] / 1e3) / 1e12
                    row.update(res, achieved_tflops=float(f"{achieved:.4g}"), peak_tflops=float(f"{peak:.4g}"),
                               peak_fraction=float(f"{achieved / peak:.3g}"), peak_source=source, status="ok")
                except Exception as err:  # one setting failing (a compile limitation) must not hide the rest
                    row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
                rows.append(row)
                log(f"{label(s)} {m}: {row.get('step_ms', '-')} ms {row['status']}")
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[0], old[1]
        torch.set_float32_matmul_precision(old[2])
    return pd.DataFrame(rows)


def markdown(df) -> str:
    cols = ["setting", "method", "step_ms", "achieved_tflops", "peak_fraction", "conv_share", "gpu_idle_share", "status"]
    cols = [c for c in cols if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.to_dict("records"):
        lines.append("| " + " | ".join("" if r.get(c) is None or r.get(c) != r.get(c) else str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default=None, choices=["full", "tiny"], help="default: full on CUDA, tiny on CPU")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--grid", default="curated", choices=["curated", "full", "default"])
    ap.add_argument("--methods", nargs="*", default=["ew", "db_mtl"])
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile rows")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--profile-steps", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=None)
    ap.add_argument("--out-dir", default=str(project_root() / "results" / "bench"))
    args = ap.parse_args(argv)
    size = args.size or ("full" if torch.device(args.device).type == "cuda" else "tiny")
    settings = {"curated": CURATED, "full": full_grid(args.compile_backend), "default": CURATED[:1]}[args.grid]
    settings = [{**s, "compile": args.compile_backend if s["compile"] else None} for s in settings]
    if torch.device(args.device).type == "cpu":  # fp16 autocast and cuDNN flags are GPU matters
        settings = [s for s in settings if s["precision"] != "fp16"]
    workload = nyuv2_workload(size)
    df = run(workload, settings, args.methods, args.device, args.steps, args.profile_steps, args.budget_s,
             log=lambda s: print(s, file=sys.stderr, flush=True))
    from mtl.perf.step import machine

    df["machine"] = machine(None, args.device)
    slug = "cpu" if torch.device(args.device).type == "cpu" else \
        "".join(c if c.isalnum() else "_" for c in torch.cuda.get_device_name(torch.device(args.device)).lower())
    out = Path(args.out_dir) / f"profile_{workload.name}_{slug}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(markdown(df))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
