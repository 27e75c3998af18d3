"""Time one training step of each balancing method relative to EW on a fixed workload.

A step is what the trainer does: zero_grad, forward, per-task losses, method.backward, optimizer
step (+ the post-step re-forward and `after_step` for methods that want it; methods consuming k
batches per step get k batches). Repetitions are interleaved (for rep: for method: one step) in one
process so that machine noise hits every method alike; the median is reported.

    python scripts/bench_step.py --workload resnet18_office --methods ew db_mtl db_mtl_rep --reps 15

Workloads: `resnet18_office` (torchvision ResNet-18, weights=None, fc -> Identity, three
Linear(512, 31) heads, batch 16 of 3x112x112, CPU, 2 threads, Adam) and `mlp` (cheap smoke run).
Writes results/bench/step_<workload>.csv (method, median_ms, ratio_to_ew, backward_passes_per_step,
workload, machine, date); backward passes are counted at the encoder output (how many times a
gradient flows back through the shared encoder per step).
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.base import HPS  # noqa: E402
from mtl import methods  # noqa: E402


def build_workload(name: str, seed: int = 0):
    """Returns (make_model, make_batch, threads): fresh model with identical init, batch factory."""
    if name == "resnet18_office":
        import torchvision

        def make_model():
            torch.manual_seed(seed)
            enc = torchvision.models.resnet18(weights=None)
            enc.fc = nn.Identity()
            return HPS(enc, {f"t{t}": nn.Linear(512, 31) for t in range(3)})

        def make_batch(gen):
            return torch.randn(16, 3, 112, 112, generator=gen), torch.randint(0, 31, (16, 3), generator=gen)

        return make_model, make_batch, 2, nn.functional.cross_entropy
    if name == "mlp":
        def make_model():
            torch.manual_seed(seed)
            enc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
            return HPS(enc, {f"t{t}": nn.Linear(256, 1) for t in range(3)})

        def make_batch(gen):
            return torch.randn(64, 64, generator=gen), torch.randn(64, 3, generator=gen)

        return make_model, make_batch, 2, lambda out, y: ((out.squeeze(-1) - y) ** 2).mean()
    raise SystemExit(f"unknown workload {name!r}; choose resnet18_office or mlp")


def method_config(name: str) -> dict:
    path = ROOT / "configs" / "method" / f"{name}.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.exists() else {"name": name}
    cfg.pop("name", None)
    return cfg


class Runner:
    """One method with its own model copy, optimizer and batches."""

    def __init__(self, name, make_model, make_batch, loss_fn, engine):
        self.name = name
        self.model = make_model()
        self.model.train()
        self.method = methods.create(name, num_tasks=3, engine=engine, **method_config(name))
        params = list(self.model.parameters())
        extra = self.method.trainable_parameters()
        groups = [{"params": params}] + ([{"params": extra}] if extra else [])
        self.opt = torch.optim.Adam(groups, lr=1e-4)
        self.loss_fn = loss_fn
        gen = torch.Generator().manual_seed(1)
        self.batches = [make_batch(gen) for _ in range(max(1, self.method.batches_per_step))]
        self.passes = 0
        self.model.encoder.register_forward_hook(self._hook_output)
        self.method.on_epoch_start(0)

    def _hook_output(self, module, inputs, output):
        if output.requires_grad:
            output.register_hook(self._count)

    def _count(self, grad):
        self.passes += 1

    def losses(self, x, y):
        out, rep = self.model(x, rep_grad=self.method.rep_grad)
        return torch.stack([self.loss_fn(out[f"t{t}"], y[:, t]) for t in range(3)]), rep

    def step(self) -> float:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=False)
        per_batch = [self.losses(x, y) for x, y in self.batches]
        if self.method.batches_per_step > 1:
            losses, rep = torch.stack([l for l, _ in per_batch]), None
        else:
            losses, rep = per_batch[0]
        self.method.backward(losses, self.model.shared_parameters(), self.model.task_parameters(), rep=rep)
        self.opt.step()
        if self.method.wants_post_step_losses:
            with torch.no_grad():
                new, _ = self.losses(*self.batches[0])
            self.method.after_step(new)
        return time.perf_counter() - t0


def machine(threads: int) -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()} | {cpu} | threads={threads} | torch {torch.__version__}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="resnet18_office")
    ap.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--engine", default="loop", help="gradient engine mode: loop | batched | auto")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    make_model, make_batch, threads, loss_fn = build_workload(args.workload)
    torch.set_num_threads(threads)
    names = args.methods or methods.available()
    if "ew" not in names:
        names = ["ew", *names]
    runners, skipped = [], {}
    for name in names:
        try:
            runners.append(Runner(name, make_model, make_batch, loss_fn, args.engine))
        except Exception as err:  # report and go on: one broken method must not hide the others
            skipped[name] = f"{type(err).__name__}: {err}"
    times = {r.name: [] for r in runners}
    for r in list(runners):
        try:
            for _ in range(args.warmup):
                r.step()
        except Exception as err:
            skipped[r.name] = f"{type(err).__name__}: {err}"
            runners.remove(r)
            del times[r.name]
    passes0 = {r.name: r.passes for r in runners}
    for rep in range(args.reps):
        for r in list(runners):
            torch.manual_seed(rep)
            try:
                times[r.name].append(r.step())
            except Exception as err:
                skipped[r.name] = f"{type(err).__name__}: {err}"
                runners.remove(r)
                del times[r.name]
        print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    if "ew" not in times:
        raise SystemExit(f"ew failed: {skipped.get('ew')}")
    ew_ms = statistics.median(times["ew"]) * 1e3
    now = dt.datetime.now().isoformat(timespec="seconds")
    rows = []
    for r in runners:
        ms = statistics.median(times[r.name]) * 1e3
        rows.append({"method": r.name, "median_ms": round(ms, 2), "ratio_to_ew": round(ms / ew_ms, 3),
                     "backward_passes_per_step": (r.passes - passes0[r.name]) / args.reps,
                     "workload": args.workload, "machine": machine(threads), "date": now})
    df = pd.DataFrame(rows)
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / f"step_{args.workload}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df[["method", "median_ms", "ratio_to_ew", "backward_passes_per_step"]].to_string(index=False))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
