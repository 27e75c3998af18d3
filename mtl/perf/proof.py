"""`make gpu-proof`: everything issue #22 asks of a lent GPU, in one script under 8 minutes.

    python -m mtl.perf.proof --qm9-file .gpu_proof/qm9.pt      # on the GPU machine (make gpu-proof PY=python3)
    python -m mtl.perf.proof --dry-run                         # the CPU rehearsal at tiny sizes (tests)

Stages, each with its share of `--budget-s` (default 420 s of wall time, so the whole call with
start-up stays under 8 minutes; a stage that runs out stops starting work and says so):
1. profile: the NYUv2 DeepLabV3+ step (288x384, batch 8) of EW and DB-MTL per execution setting
   (mtl.perf.profile's curated grid: fp32/TF32, bf16, fp16; deterministic on/off; NCHW/NHWC;
   eager/torch.compile): step ms, TFLOP/s, fraction of the chip's peak, conv share, GPU idle share.
2. step table: bare loop, EW and the paper's methods (mtl.perf.step) in the exact setting
   (trainer.speed=exact, fp32) and the fast one (speed=fast, bf16): ratio to the bare loop, FLOP/s.
3. QM9 throughput (full data, complete graphs, batch 128): training steps/s of 1, 2 and 4 EW runs
   packed on the one GPU (parallel processes, each its own loader with 2 workers), and the
   loader's own batches/s beside them.
4. QM9 training: EW, UW and DB-MTL trained together on the GPU (three `python -m mtl.train`
   processes) for as many whole epochs as the stage's budget fits (from stage 3's 4-packed rate);
   Δp against the paper's STL row (DB-MTL Table 3) at the selected epoch, labelled with its epochs.
5. kill-and-resume on CUDA: DB-MTL on QM9, stopped by SIGUSR1 in mid-epoch, resumed, against the
   uninterrupted run (metrics, Δp, steps compared for equality).
Writes results/bench/gpu_proof_<gpu>.csv (long format: stage, name, metric, value, note) and
gpu_proof_<gpu>.md (the report). Without CUDA the real proof refuses in one line (`--dry-run`
is the rehearsal).

QM9 data: `--qm9-file`, a QM9 storage file (the QM9 cache's `qm9pack_pyg_*.pt`, which the
benchmark loads as `data_file` without qm9pack/RDKit); scripts/gpu_proof_prepare.sh packs it.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mtl.paths import project_root

ROOT = project_root()
SHARES = {"profile": 0.30, "steps": 0.12, "throughput": 0.12, "training": 0.32, "resume": 0.14}
TRAINED = ("ew", "uw", "db_mtl")
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


class Budget:
    def __init__(self, total_s: float):
        self.t0, self.total = time.perf_counter(), total_s

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.t0)

    def share(self, stage: str, remaining_stages: list[str]) -> float:
        """This stage's seconds: its share of what is left, in proportion to the stages still to run."""
        weight = sum(SHARES[s] for s in remaining_stages) or 1.0
        return max(0.0, self.left()) * SHARES[stage] / weight


class Report:
    def __init__(self):
        self.rows: list[dict[str, Any]] = []
        self.md: list[str] = []

    def add(self, stage, name, metric, value, note=""):
        self.rows.append({"stage": stage, "name": name, "metric": metric, "value": value, "note": note})

    def section(self, title: str, *lines: str):
        self.md += [f"## {title}", "", *lines, ""]


def slug(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu_dry_run"
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


# ---- stages 1-2 ---------------------------------------------------------------------------------
def stage_profile(rep: Report, device: str, tiny: bool, budget_s: float) -> None:
    from mtl.perf import profile

    workload = profile.nyuv2_workload("tiny" if tiny else "full")
    compiled = next(s for s in profile.CURATED if s["compile"])
    settings = profile.CURATED[:1] + [{**compiled, "compile": "aot_eager"}] if tiny else profile.CURATED
    if torch.device(device).type == "cpu":
        settings = [s for s in settings if s["precision"] != "fp16"]
    df = profile.run(workload, settings, ("ew", "db_mtl"), device, steps=1 if tiny else 5,
                     profile_steps=1 if tiny else 2, budget_s=budget_s, log=lambda s: print(f"[profile] {s}", flush=True))
    for r in df.to_dict("records"):
        for metric in ("step_ms", "achieved_tflops", "peak_fraction", "conv_share", "gpu_idle_share", "top_kernels"):
            if metric in r and r[metric] == r[metric]:
                rep.add("profile", f"{r['setting']} | {r['method']}", metric, r[metric], r["status"])
        if r["status"] != "ok":
            rep.add("profile", f"{r['setting']} | {r['method']}", "status", r["status"])
    peak_src = next((r["peak_source"] for r in df.to_dict("records") if r.get("peak_source") == r.get("peak_source")
                     and r.get("peak_source")), "")
    rep.section("1. Profile: NYUv2 DeepLabV3+ HPS step" + (" (tiny)" if tiny else " (288x384, batch 8)"),
                f"FLOPs per step (counted): EW {df[df.method == 'ew'].gflop_per_step.iloc[0]} GFLOP, DB-MTL "
                f"{df[df.method == 'db_mtl'].gflop_per_step.iloc[0]} GFLOP. Peak: {peak_src}.", "",
                profile.markdown(df), "", "Top kernels per row: in the CSV (`top_kernels`).")


def stage_steps(rep: Report, device: str, tiny: bool, budget_s: float) -> None:
    from mtl.benchmarks.paper import campaign_methods
    from mtl.perf import profile, step
    from mtl.run.device import apply_speed, speed_settings

    workload = profile.nyuv2_workload("tiny" if tiny else "full")
    t0 = time.perf_counter()
    lines = []
    for speed, precision in (("exact", "fp32"), ("fast", "bf16")):
        left = budget_s - (time.perf_counter() - t0)
        if left <= 0:
            rep.add("steps", speed, "status", "skipped: time budget")
            continue
        if speed == "exact":
            names = ["db_mtl"]
        else:  # every paper method in the fast setting, as many as the budget allows
            from mtl.perf.cost import is_gradient_method

            rest = [m for m in campaign_methods() if m not in ("ew", "db_mtl")]
            names = ["db_mtl", *sorted(rest, key=lambda m: not is_gradient_method(m))]  # gradient methods first
            names = names[:max(1, int(left / 12))] if not tiny else names[:1]  # ~12 s a method on an H100
        s = speed_settings(speed, True, False)
        apply_speed(s)
        try:
            df, skipped = step.run(workload, names, reps=1 if tiny else 8, warmup=1 if tiny else 3, engine="loop",
                                   device=device, precision=precision, log=lambda m: None,
                                   channels_last=s["channels_last"])
        finally:
            apply_speed(speed_settings("exact", True, False))
        for r in df.to_dict("records"):
            for metric in ("median_ms", "ratio_to_bare_loop", "ratio_to_ew", "achieved_tflops", "peak_fraction",
                           "host_syncs_per_step", "peak_mib"):
                rep.add("steps", f"speed={speed} {precision} | {r['method']}", metric, r[metric])
        for name, why in skipped.items():
            rep.add("steps", f"speed={speed} {precision} | {name}", "skipped", why[:120])
        lines += [f"**trainer.speed={speed}, {precision}**", "",
                  "| method | step (ms) | × bare loop | × EW | TFLOP/s | of peak | host syncs |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['median_ms']} | {r['ratio_to_bare_loop']} | {r['ratio_to_ew']} | "
                  f"{r['achieved_tflops']} | {r['peak_fraction']:.1%} | {r['host_syncs_per_step']} |"
                  for r in df.to_dict("records")]
        lines += [f"skipped {n}: {w[:100]}" for n, w in skipped.items()] + [""]
    rep.section("2. Step table: exact vs fast", *lines)


# ---- QM9 ------------------------------------------------------------------------------------------
def qm9_overrides(args) -> list[str]:
    """The QM9 data overrides (computed once: the dry run's fixture must not be rewritten while a
    packed process reads it)."""
    if getattr(args, "_qm9", None) is None:
        args._qm9 = _qm9_overrides(args)
    return args._qm9


def _qm9_overrides(args) -> list[str]:
    if args.dry_run:
        from mtl.benchmarks.fixtures import tiny_overrides

        tiny = [o for o in tiny_overrides("qm9", args.work / "fixtures") if not o.startswith(("trainer.", "benchmark="))]
        return [*tiny, "benchmark.build.num_workers=0"]
    return [f"benchmark.build.data_file={Path(args.qm9_file).resolve()}", "benchmark.build.progress=false"]


def throughput_worker(argv: list[str]) -> int:
    """One packed process: build QM9, time EW training steps for `seconds`; prints one JSON line."""
    seconds, device, out, *overrides = argv
    from mtl.benchmarks.base import to_device
    from mtl.config.compose import compose
    from mtl.perf.step import Runner, benchmark_workload
    from mtl.run.trainer import build_benchmark

    cfg = compose(["benchmark=qm9", "logger=none", *overrides])
    bench = build_benchmark(cfg)
    dev = torch.device(device)
    # the loader alone: batches/s through the real training loader (2 workers, as the config)
    t0, n = time.perf_counter(), 0
    for batch in bench.loaders["train"]:
        to_device(batch, dev)
        n += 1
        if time.perf_counter() - t0 > float(seconds) / 3:
            break
    loader_rate = n / (time.perf_counter() - t0)
    w = benchmark_workload(bench, "qm9")
    r = Runner("ew", w, device=device)
    it = iter(bench.loaders["train"])

    def step():
        nonlocal it
        try:
            b = next(it)
        except StopIteration:
            it = iter(bench.loaders["train"])
            b = next(it)
        r.batches = [to_device(b, dev)]
        r._step()

    for _ in range(3):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < float(seconds):
        step()
        n += 1
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    rate = n / (time.perf_counter() - t0)
    Path(out).write_text(json.dumps({"steps_per_s": rate, "loader_batches_per_s": loader_rate, "steps": n}))
    return 0


def stage_throughput(rep: Report, args, budget_s: float) -> dict[int, float]:
    rates: dict[int, float] = {}
    # build the precomputed complete graphs beside the QM9 file once, before the packed workers load it
    from mtl.config.compose import compose
    from mtl.run.trainer import build_benchmark

    t0 = time.perf_counter()
    build_benchmark(compose(["benchmark=qm9", "logger=none", *qm9_overrides(args)]))
    rep.add("throughput", "-", "qm9_build_s", round(time.perf_counter() - t0, 1), "load + precomputed graphs")
    budget_s -= time.perf_counter() - t0
    packs = (2,) if args.dry_run else (1, 2, 4)  # the dry run: one packed pair runs every line
    per = 2.0 if args.dry_run else max(3.0, budget_s / len(packs) - 15)  # minus start-up and data load
    lines = ["| runs packed | steps/s per run | total steps/s | loader batches/s per run |", "|---|---|---|---|"]
    for k in packs:
        outs = [args.work / f"tp_{k}_{i}.json" for i in range(k)]
        procs = [subprocess.Popen([sys.executable, "-m", "mtl.perf.proof", "--throughput-worker", str(per), args.device,
                                   str(o), *qm9_overrides(args)], cwd=ROOT, env=ENV) for o in outs]
        for p in procs:
            p.wait(timeout=None if args.dry_run else per * 4 + 120)
        res = [json.loads(o.read_text()) for o in outs if o.exists()]
        if len(res) < k:
            rep.add("throughput", f"{k} packed", "status", f"failed: {k - len(res)} of {k} workers wrote nothing")
            continue
        each = sum(r["steps_per_s"] for r in res) / k
        loader = min(r["loader_batches_per_s"] for r in res)
        rates[k] = each
        rep.add("throughput", f"{k} packed", "steps_per_s_per_run", round(each, 2))
        rep.add("throughput", f"{k} packed", "steps_per_s_total", round(each * k, 2))
        rep.add("throughput", f"{k} packed", "loader_batches_per_s_per_run", round(loader, 1),
                "loader alone (2 workers), same process, before the steps")
        lines.append(f"| {k} | {each:.1f} | {each * k:.1f} | {loader:.1f} |")
    rep.section("3. QM9 throughput (full data, complete graphs, batch 128, EW)", *lines, "",
                "The loader is not the bottleneck where its batches/s exceed the steps/s per run.")
    return rates


def train_cmd(args, method: str, root: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "mtl.train", "benchmark=qm9", f"method={method}", f"device={args.device}",
            "logger=none", "trainer.progress=false", f"run.root={root}", "seed=0", *qm9_overrides(args), *extra]


def stage_training(rep: Report, args, budget_s: float, rates: dict[int, float]) -> None:
    steps_per_epoch, eval_batches = (866, 158) if not args.dry_run else (None, None)
    extra = []
    if args.dry_run:
        epochs = 1
        extra = ["trainer.epochs=1", "trainer.max_steps_per_epoch=3"]
    else:
        rate = rates.get(4) or rates.get(2) or rates.get(1) or 20.0  # 3 runs: between 2 and 4 packed
        epoch_s = (steps_per_epoch + 3 * eval_batches) / rate + 5    # + evaluation (val, test, epoch 0) + start
        epochs = max(1, int((budget_s - 40) / epoch_s))             # 40 s: start-up, data load, summary
        extra = [f"trainer.epochs={epochs}"]
    root = args.work / "train"
    t0 = time.perf_counter()
    procs = {m: subprocess.Popen(train_cmd(args, m, root, extra), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for m in TRAINED}
    deadline = t0 + (budget_s + 60 if not args.dry_run else 3600)
    lines = [f"EW, UW and DB-MTL trained at once on the one GPU for **{epochs} epoch(s)** of the 300 "
             f"(LibMTL protocol otherwise unchanged); Δp against the STL row of DB-MTL Table 3 at the "
             f"selected (best validation) epoch. After {epochs} epoch(s), not the paper's 300.", "",
             "| method | epochs | Δp (%) vs paper STL | wall (s) | steps/s |", "|---|---|---|---|---|"]
    for m, p in procs.items():
        try:
            out, _ = p.communicate(timeout=max(5.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            rep.add("training", m, "status", "killed: past the stage's deadline")
            continue
        summary = root / "qm9" / m / "seed0" / "summary.json"
        if p.returncode != 0 or not summary.exists():
            rep.add("training", m, "status", f"failed rc={p.returncode}: {out.strip().splitlines()[-1][:150] if out.strip() else ''}")
            continue
        s = json.loads(summary.read_text())
        wall = s.get("wall_time_s") or 0
        rep.add("training", m, "delta_p_vs_paper_stl", round(s["delta_p"], 2), f"after {s['epochs']} epoch(s)")
        rep.add("training", m, "epochs", s["epochs"])
        rep.add("training", m, "wall_s", round(wall, 1))
        rep.add("training", m, "steps_per_s", round(s["steps"] / wall, 1) if wall else "")
        lines.append(f"| {m} | {s['epochs']} | {s['delta_p']:+.1f} | {wall:.0f} | "
                     f"{s['steps'] / wall if wall else float('nan'):.1f} |")
    rep.section(f"4. QM9 training, {epochs} epoch(s)", *lines)


def stage_resume(rep: Report, args, budget_s: float) -> None:
    from mtl.run.testing import signal_after_steps

    steps = 2 if args.dry_run else 100
    common = ["trainer.epochs=2", f"trainer.max_steps_per_epoch={steps}", "trainer.deterministic=true"]
    if not args.dry_run:  # equality is the point, not the numbers: evaluate on 1,000 molecules per split
        common.append("benchmark.build.subset={val:1000,test:1000}")
    t0 = time.perf_counter()

    def run(root: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(train_cmd(args, "db_mtl", root, [*common, *extra]), cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=None if args.dry_run else max(30.0, budget_s))

    full = run(args.work / "full")
    cut = run(args.work / "cut", signal_after_steps(steps + steps // 2))  # in the middle of epoch 2
    resumed = run(args.work / "cut")
    ok = full.returncode == 0 and cut.returncode == 3 and resumed.returncode == 0 and "resuming" in resumed.stdout
    if not ok:
        rep.add("resume", "db_mtl", "status", f"failed: full rc={full.returncode}, cut rc={cut.returncode} (3 expected), "
                f"resumed rc={resumed.returncode}: {(resumed.stderr or cut.stderr or full.stderr).strip()[-150:]}")
        rep.section("5. Kill-and-resume on CUDA", "failed (see the CSV)")
        return
    a, b = (json.loads((args.work / d / "qm9" / "db_mtl" / "seed0" / "summary.json").read_text()) for d in ("full", "cut"))
    same = (a["metrics"], a["delta_p"], a["steps"]) == (b["metrics"], b["delta_p"], b["steps"])
    rel = max_relative_difference(a["metrics"], b["metrics"])
    rep.add("resume", "db_mtl", "identical_to_uninterrupted", same, f"SIGUSR1 after step {steps + steps // 2}")
    rep.add("resume", "db_mtl", "max_relative_metric_difference", f"{rel:.3g}")
    rep.add("resume", "db_mtl", "same_steps", a["steps"] == b["steps"])
    rep.add("resume", "db_mtl", "delta_p_full_vs_resumed", f"{a['delta_p']:.6g}/{b['delta_p']:.6g}")
    rep.add("resume", "db_mtl", "wall_s", round(time.perf_counter() - t0, 1))
    rep.section("5. Kill-and-resume on CUDA",
                f"DB-MTL on QM9, 2 epochs of {steps} steps (val/test: 1,000 molecules each), trainer.speed=exact (deterministic cuDNN): "
                f"stopped by SIGUSR1 after step {steps + steps // 2} (exit 3), resumed: "
                f"{'**identical**' if same else '**not bit-identical**'} metrics, Δp and steps "
                f"(largest relative metric difference {rel:.3g}; Δp {a['delta_p']!r} vs {b['delta_p']!r}; "
                f"steps {a['steps']} vs {b['steps']}).")


def max_relative_difference(a: dict, b: dict) -> float:
    """Largest |x - y| / max(|x|, tiny) over the metrics of two summaries ({task: {metric: value}})."""
    worst = 0.0
    for t, ms in a.items():
        for m, x in ms.items():
            y = b[t][m]
            worst = max(worst, abs(x - y) / max(abs(x), 1e-30))
    return worst


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--throughput-worker"]:
        return throughput_worker(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU rehearsal at tiny sizes (QM9 fixture, tiny NYUv2)")
    ap.add_argument("--device", default=None, help="default: cuda (cpu under --dry-run)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="wall-time budget (default 420 s; the dry run ignores it: every stage runs to its end)")
    ap.add_argument("--qm9-file", default=os.environ.get("QM9_FILE", ".gpu_proof/qm9.pt"))
    ap.add_argument("--stages", default="profile,steps,throughput,training,resume")
    ap.add_argument("--out-dir", default=str(ROOT / "results" / "bench"))
    args = ap.parse_args(argv)
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    dev = torch.device(args.device)
    if not args.dry_run and (dev.type != "cuda" or not torch.cuda.is_available()):
        print("gpu-proof: no CUDA GPU here; run it on a GPU machine (make gpu-proof PY=python3), "
              "or `python -m mtl.perf.proof --dry-run` for the CPU rehearsal", file=sys.stderr)
        return 2
    stages = [s for s in args.stages.split(",") if s]
    qm9_stages = {"throughput", "training", "resume"}
    if not args.dry_run and qm9_stages & set(stages) and not Path(args.qm9_file).is_file():
        print(f"gpu-proof: no QM9 file at {args.qm9_file} (scripts/gpu_proof_prepare.sh packs one; "
              f"--qm9-file PATH or QM9_FILE=PATH); the QM9 stages are skipped", file=sys.stderr)
        stages = [s for s in stages if s not in qm9_stages]
    budget = Budget(args.budget_s or 420.0)
    rep = Report()
    args.work = Path(tempfile.mkdtemp(prefix="gpu_proof_"))
    rates: dict[int, float] = {}
    started = dt.datetime.now().isoformat(timespec="seconds")
    for i, stage in enumerate(stages):
        # the dry run rehearses every line: no stage is cut short by the budget there
        share = budget.share(stage, stages[i:]) if not args.dry_run else 3600.0
        t0 = time.perf_counter()
        print(f"[gpu-proof] {stage}: {share:.0f} s of {budget.left():.0f} s left", flush=True)
        try:
            if stage == "profile":
                stage_profile(rep, args.device, args.dry_run, share)
            elif stage == "steps":
                stage_steps(rep, args.device, args.dry_run, share)
            elif stage == "throughput":
                rates = stage_throughput(rep, args, share)
            elif stage == "training":
                stage_training(rep, args, share, rates)
            elif stage == "resume":
                stage_resume(rep, args, share)
            else:
                raise ValueError(f"unknown stage {stage!r}")
        except Exception as err:  # a broken stage is reported, the others still run
            rep.add(stage, "-", "status", f"failed: {type(err).__name__}: {str(err)[:200]}")
            rep.section(f"{stage}: failed", f"`{type(err).__name__}: {str(err)[:300]}`")
            if args.dry_run:
                raise
        rep.add(stage, "-", "stage_wall_s", round(time.perf_counter() - t0, 1))
    name = slug(dev)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from mtl.perf.step import machine

    stamp = {"machine": machine(None, args.device), "torch": torch.__version__, "date": started}
    with (out / f"gpu_proof_{name}.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["stage", "name", "metric", "value", "note", *stamp])
        w.writeheader()
        for r in rep.rows:
            w.writerow({**r, **stamp})
    total = budget.total - budget.left()
    head = [f"# GPU proof: {stamp['machine']}", "",
            f"`{'python -m mtl.perf.proof ' + ' '.join(argv)}`, {started}, {total:.0f} s of a {budget.total:.0f} s budget"
            + (" (**CPU dry run at tiny sizes: the numbers mean nothing**)" if args.dry_run else "") + ".", ""]
    (out / f"gpu_proof_{name}.md").write_text("\n".join(head + rep.md))
    print(f"[gpu-proof] wrote {out / f'gpu_proof_{name}.csv'} and .md in {total:.0f} s")
    failed = [r for r in rep.rows if r["metric"] == "status" and str(r["value"]).startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
