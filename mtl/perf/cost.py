"""What a paper table costs: GPU-hours of a `reproduce-<bench>` campaign from measured steps.

    python -m mtl.perf.cost                    # nyuv2, qm9, cityscapes: the table of docs/speed.md
    python -m mtl.perf.cost nyuv2 --markdown

The protocol comes from the configs, never restated here: the experiment file
(configs/experiment/reproduce_<name>.yaml: benchmark, seeds, STL on/off), the method list
(configs/methods/paper.yaml), and the composed benchmark config (epochs, batch sizes, split sizes,
number of tasks). Step times come from committed GPU measurements (results/bench/gpu_smoke_*.csv,
`nyuv2_step` rows: bare loop, EW, DB-MTL, Nash-MTL at full size in fp32) and the FLOP counts of
results/bench/flops.csv; every figure says whether it is measured or estimated:

- NYUv2 EW, bare loop, DB-MTL and Nash-MTL steps: measured (the smoke CSV).
- Other gradient methods: the bare loop x that method's ratio to its bare loop measured on the CPU
  (results/bench/step_resnet18_office.csv), else x1.0: estimated.
- Loss-weighting methods (one backward pass) and STL: the EW step: estimated (STL runs one head:
  cheaper; EW is an upper bound).
- Another conv-net benchmark (Cityscapes): NYUv2's measured steps scaled by the FLOP ratio of the
  two workloads (same network family): estimated.
- QM9: no GPU step is committed yet (make gpu-proof measures it); `QM9_EW_MS_ESTIMATE` (docs/speed.md's
  roofline estimate) scaled by the FLOP ratio bare loop / EW for the gradient methods: estimated.
- Evaluation: per epoch, the evaluated splits' batches at (forward FLOPs / EW step FLOPs) x the EW
  step: estimated. Data loading is taken as hidden behind the GPU (loader bench: >= 3x ahead).
"""
from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from mtl.paths import CONFIG_DIR, project_root

BENCH_DIR = project_root() / "results" / "bench"
QM9_EW_MS_ESTIMATE = 8.0     # H100, batch 128, complete graphs: the 5-10 ms roofline estimate of docs/speed.md
FLOP_WORKLOAD = {"nyuv2": "nyuv2_deeplab", "cityscapes": "cityscapes_deeplab", "qm9": "qm9_mpnn",
                 "nyuv2_segnet": "nyuv2_segnet_mtan", "office31": "office_resnet18", "officehome": "office_resnet18"}
MEASURED_ON = "nyuv2"        # the benchmark whose full-size GPU steps are committed


@dataclass
class Protocol:
    """One campaign's size, read from the configs."""

    name: str
    benchmark: str
    epochs: int
    steps_per_epoch: int
    eval_batches_per_epoch: int
    methods: list[str]
    seeds: list[str]
    tasks: int
    stl: bool


def protocol(name: str) -> Protocol:
    """The campaign `reproduce_<name>` as its config files define it."""
    from omegaconf import OmegaConf

    from mtl.benchmarks.paper import campaign_methods
    from mtl.config.compose import compose

    exp = OmegaConf.load(CONFIG_DIR / "experiment" / f"reproduce_{name}.yaml")
    params = exp.hydra.sweeper.params
    bench = str(params.benchmark)
    seeds = [s.strip() for s in str(params.seed).split(",")]
    methods = campaign_methods()
    cfg = compose([f"benchmark={bench}", "logger=none"])
    b = cfg.benchmark
    epochs = int(b.protocol.epochs)
    build = b.build
    if "split_sizes" in build and build.split_sizes is not None:  # dense: drop_last training batches
        steps = int(build.split_sizes.train) // int(build.train_batch_size)
        eval_batches = math.ceil(int(build.split_sizes.val) / int(build.test_batch_size))
    elif bench.startswith("qm9"):  # 130,831 molecules - test - val; every batch (no drop_last)
        n_train = 130_831 - int(build.n_test) - int(build.n_val)
        steps = math.ceil(n_train / int(build.batch_size))
        eval_batches = sum(math.ceil(int(build[k]) / int(build.eval_batch_size or build.batch_size))
                           for k in ("n_val", "n_test"))
    else:
        raise ValueError(f"cost: no step count rule for benchmark {bench!r}")
    tasks = len(b.protocol.reference.metrics)
    stl = bool((exp.get("reproduce") or {}).get("stl", False))
    return Protocol(name, bench, epochs, steps, eval_batches, methods, seeds, tasks, stl)


# ---- step times ---------------------------------------------------------------------------------
def measured_steps(device_slug: str = "nvidia_h100_80gb_hbm3", precision: str = "fp32",
                   bench_dir: Path = BENCH_DIR) -> dict[str, float]:
    """{method: median ms} of the committed full-size NYUv2 GPU step (`nyuv2_step` rows)."""
    out: dict[str, float] = {}
    for path in sorted(bench_dir.glob(f"gpu_smoke_{device_slug}*.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if (row["section"] == "nyuv2_step" and row["benchmark"] == "nyuv2_hps"
                        and row["precision"] == precision and row["metric"] == "median_ms"):
                    out.setdefault(row["method"], float(row["value"]))
    return out


def flop_counts(bench_dir: Path = BENCH_DIR) -> dict[str, dict[str, float]]:
    with (bench_dir / "flops.csv").open() as f:
        return {r["workload"]: {k: float(v) for k, v in r.items() if k.endswith("_gflop") and v} for r in csv.DictReader(f)}


def cpu_ratios(bench_dir: Path = BENCH_DIR) -> dict[str, float]:
    path = bench_dir / "step_resnet18_office.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {r["method"]: float(r["ratio_to_bare_loop"]) for r in csv.DictReader(f)}


def is_gradient_method(name: str) -> bool:
    from mtl import methods
    from mtl.methods.base import GradientMethod

    return isinstance(methods.create(name, num_tasks=3), GradientMethod)


@dataclass
class Cost:
    name: str
    runs: int
    gpu_hours: float
    train_hours: float
    eval_hours: float
    ew_ms: float
    bare_ms: float
    notes: list[str] = field(default_factory=list)
    per_method_ms: dict[str, tuple[float, str]] = field(default_factory=dict)


def campaign_cost(name: str, measured: dict[str, float] | None = None, bench_dir: Path = BENCH_DIR) -> Cost:
    """GPU-hours of `reproduce_<name>`: sum over runs of epochs x (steps x step + eval batches x eval batch)."""
    p = protocol(name)
    measured = measured_steps(bench_dir=bench_dir) if measured is None else measured
    flops = flop_counts(bench_dir)
    ratios = cpu_ratios(bench_dir)
    notes = []
    w = flops[FLOP_WORKLOAD[p.benchmark]]
    if p.benchmark == MEASURED_ON:
        ew, bare = measured["ew"], measured["bare_loop"]
        src = "measured"
        notes.append("EW and bare-loop steps measured (H100, fp32/TF32)")
    elif p.benchmark.startswith("qm9"):
        ew = measured.get("qm9_ew", QM9_EW_MS_ESTIMATE)
        bare = measured.get("qm9_bare_loop", ew * w["bare_loop_step_gflop"] / w["ew_step_gflop"])
        src = "measured" if "qm9_ew" in measured else "estimated"
        notes.append(f"EW step {ew:.1f} ms {src}; bare loop = EW x FLOP ratio {w['bare_loop_step_gflop'] / w['ew_step_gflop']:.2f}")
    else:
        ref = flops[FLOP_WORKLOAD[MEASURED_ON]]
        ew = measured["ew"] * w["ew_step_gflop"] / ref["ew_step_gflop"]
        bare = measured["bare_loop"] * w["bare_loop_step_gflop"] / ref["bare_loop_step_gflop"]
        src = "estimated"
        notes.append(f"NYUv2's measured steps x FLOP ratio ({w['ew_step_gflop'] / ref['ew_step_gflop']:.2f} EW)")
    per: dict[str, tuple[float, str]] = {}
    for m in p.methods:
        if not is_gradient_method(m):
            per[m] = (ew, src if m == "ew" else "estimated")
        elif p.benchmark == MEASURED_ON and m in measured:
            per[m] = (measured[m], "measured")
        elif m in measured and src == "estimated":  # a measured NYUv2 ratio carried to another benchmark
            per[m] = (bare * measured[m] / measured["bare_loop"], "estimated")
        else:
            per[m] = (bare * ratios.get(m, 1.0), "estimated")
    eval_ms = ew * w["forward_gflop"] / w["ew_step_gflop"]
    epoch_eval_s = p.eval_batches_per_epoch * eval_ms / 1e3
    seeds = len(p.seeds)
    train_s = sum(ms for ms, _ in per.values()) * p.steps_per_epoch * p.epochs / 1e3 * seeds
    runs = len(p.methods) * seeds
    if p.stl:
        train_s += p.tasks * seeds * ew * p.steps_per_epoch * p.epochs / 1e3
        runs += p.tasks * seeds
    eval_s = runs * p.epochs * epoch_eval_s
    notes.append(f"evaluation {p.eval_batches_per_epoch} batches/epoch at {eval_ms:.1f} ms (forward share of EW): estimated")
    return Cost(name, runs, (train_s + eval_s) / 3600, train_s / 3600, eval_s / 3600, ew, bare, notes, per)


def markdown(names=("nyuv2", "qm9", "cityscapes"), measured: dict[str, float] | None = None) -> str:
    lines = ["| campaign | runs | epochs x steps | EW step (ms) | bare loop (ms) | training (GPU-h) | "
             "evaluation (GPU-h) | **total (H100-h)** | basis |", "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        p, c = protocol(n), campaign_cost(n, measured)
        lines.append(f"| reproduce-{n.replace('_', '-')} | {c.runs} | {p.epochs} x {p.steps_per_epoch} | {c.ew_ms:.1f} | "
                     f"{c.bare_ms:.1f} | {c.train_hours:.1f} | {c.eval_hours:.1f} | **{c.gpu_hours:.1f}** | "
                     f"{'; '.join(c.notes)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=["nyuv2", "qm9", "cityscapes"])
    args = ap.parse_args(argv)
    print(markdown(args.names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
