"""Time one training step of each balancing method against a bare loop of T backward passes and EW.

A step is what the trainer does: zero_grad, forward, per-task losses, method.backward, optimizer
step (+ the post-step re-forward and `after_step` for methods that want it; methods consuming k
batches per step get k batches). The reference row `bare_loop` is the floor of every gradient
method: the same forward, T backward passes (`losses[t].backward()` one after the other, so
`.grad` receives the plain sum) and the same optimizer step, nothing else. Repetitions are
interleaved (for rep: for method: one step) in one process so that machine noise hits every method
alike; the median step time is reported, and each ratio is the median over repetitions of the ratio
to the reference's step in the same repetition (paired: robust to load that changes between
repetitions on a shared machine). After timing, one more step per method runs under
`mtl.perf.syncs.SyncCounter` to count device->host synchronisations.

    python scripts/bench_step.py --workload resnet18_office --methods ew db_mtl db_mtl_rep --reps 15

Workloads: `resnet18_office` (torchvision ResNet-18, weights=None, fc -> Identity, three
Linear(512, 31) heads, batch 16 of 3x112x112, 2 threads, Adam), `nyuv2_hps_96x128` (NYUv2's
DeepLabV3+ HPS, dilated ResNet-50 + three ASPP heads, random init, batch 2 of a 96x128 fixture: the
heads' share of the step at CPU size) and `mlp` (cheap smoke run).
`db_mtl@jacobian` is DB-MTL through the generic gradient-method path (the [T, D] Jacobian copy,
then EMA, norms and combination on it: the implementation before the streamed loop), for comparison.
`--device cuda` times on a GPU (synchronised), `--precision bf16|fp16` runs the forward pass under
autocast. Writes results/bench/step_<workload>.csv (method, median_ms, ratio_to_bare_loop,
ratio_to_ew, backward_passes_per_step, host_syncs_per_step, gflop_per_step, achieved_tflops,
peak_tflops, peak_fraction, peak_source, engine, precision, channels_last, compile, device, peak_mib,
workload, machine, date); FLOPs are counted over one extra step with FlopCounterMode (matrix work
only, see mtl/perf/flops.py); the peak is the chip's data-sheet dense peak for the precision (fp32
convolutions on CUDA: TF32) or, on the CPU, a measured 1024^3 matmul (`--peak` overrides); backward passes are counted at the encoder output (how many times a
gradient flows back through the shared encoder per step).
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn
from mtl.paths import CONFIG_DIR, project_root

ROOT = project_root()

from mtl.models.base import HPS
from mtl import methods
from mtl.perf import machine  # noqa: F401  (the scripts' machine description)
from mtl.benchmarks.base import stack_task_losses, task_indices, to_device
from mtl.methods.base import GradientMethod, StepContext, loss_flags
from mtl.run.precision import autocast, steps
from mtl.perf.syncs import SyncCounter

BARE = "bare_loop"


@dataclass
class Workload:
    """make_model() -> fresh model with identical init; make_batch(gen) -> one batch;
    compute_losses(model, batch, rep_grad) -> ([T] losses, Representation | None)."""

    name: str
    make_model: Callable[[], nn.Module]
    make_batch: Callable[[torch.Generator], Any]
    compute_losses: Callable
    num_tasks: int
    threads: int | None = None
    sample_losses: Callable | None = None  # per-sample losses [B, T] (methods that need them: NTKMTL-SR)


def _hps_losses(loss_fn, num_tasks):
    def compute(model, batch, rep_grad=False, tasks=None):
        x, y = batch
        idx = task_indices(tasks, num_tasks)
        out, rep = model(x, rep_grad=rep_grad, tasks=[f"t{t}" for t in idx])
        return stack_task_losses({t: loss_fn(out[f"t{t}"], y[:, t]) for t in idx}, num_tasks), rep
    return compute


def _hps_sample_losses(loss_fn, num_tasks):
    def compute(model, batch, rep_grad=False):
        x, y = batch
        out, rep = model(x, rep_grad=rep_grad)
        return torch.stack([loss_fn(out[f"t{t}"], y[:, t]) for t in range(num_tasks)], dim=1), rep
    return compute


def build_workload(name: str, seed: int = 0) -> Workload:
    if name == "resnet18_office":
        import torchvision

        def make_model():
            torch.manual_seed(seed)
            enc = torchvision.models.resnet18(weights=None)
            enc.fc = nn.Identity()
            return HPS(enc, {f"t{t}": nn.Linear(512, 31) for t in range(3)})

        def make_batch(gen):
            return torch.randn(16, 3, 112, 112, generator=gen), torch.randint(0, 31, (16, 3), generator=gen)

        ce = partial(nn.functional.cross_entropy, reduction="none")
        return Workload(name, make_model, make_batch, _hps_losses(nn.functional.cross_entropy, 3), 3, 2,
                        _hps_sample_losses(ce, 3))
    if name == "mlp":
        def make_model():
            torch.manual_seed(seed)
            enc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
            return HPS(enc, {f"t{t}": nn.Linear(256, 1) for t in range(3)})

        def make_batch(gen):
            return torch.randn(64, 64, generator=gen), torch.randn(64, 3, generator=gen)

        mse = lambda out, y: ((out.squeeze(-1) - y) ** 2).mean()  # noqa: E731
        per_sample = lambda out, y: (out.squeeze(-1) - y) ** 2  # noqa: E731
        return Workload(name, make_model, make_batch, _hps_losses(mse, 3), 3, 2, _hps_sample_losses(per_sample, 3))
    if name == "nyuv2_hps_96x128":
        import tempfile

        from mtl.datasets import nyuv2
        from mtl.benchmarks.nyuv2 import build

        root = nyuv2.write_fixture(Path(tempfile.mkdtemp(prefix="bench_nyuv2_")), n_train=4, n_val=1,
                                   height=96, width=128)
        torch.manual_seed(seed)
        bench = build(root=str(root), image_size=[96, 128], split_sizes=None, pretrained=False, num_workers=0,
                      train_batch_size=2, test_batch_size=2)
        w = benchmark_workload(bench, name)
        w.threads = 2
        return w
    raise SystemExit(f"unknown workload {name!r}; choose resnet18_office, mlp or nyuv2_hps_96x128")


def benchmark_workload(bench, name: str | None = None) -> Workload:
    """A workload from a built `mtl.benchmarks.base.Benchmark`: its model (re-initialised from the same
    state for every method), its training batches in loader order, its losses."""
    import copy

    init = copy.deepcopy(bench.model.state_dict())

    def make_model():
        model = copy.deepcopy(bench.model)
        model.load_state_dict(init)
        return model

    def make_batch(gen, _it=[None]):  # cycles through the training loader
        if _it[0] is None:
            _it[0] = iter(bench.loaders["train"])
        try:
            return next(_it[0])
        except StopIteration:
            _it[0] = iter(bench.loaders["train"])
            return next(_it[0])

    return Workload(name or bench.name, make_model, make_batch, bench.compute_losses, len(bench.tasks),
                    sample_losses=bench.sample_losses if bench.has_sample_losses() else None)


def method_config(name: str) -> dict:
    from omegaconf import OmegaConf

    path = CONFIG_DIR / "method" / f"{name}.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.exists() else {"name": name}
    cfg.pop("name", None)
    return cfg


class Runner:
    """One method (or the bare loop) with its own model copy, optimizer and batches."""

    def __init__(self, name: str, workload: Workload, engine: str = "loop", device: str = "cpu",
                 precision: str = "fp32", overrides: dict | None = None, channels_last: bool = False,
                 compile: str | None = None):
        self.name, self.workload = name, workload
        self.device = torch.device(device)
        self.precision = precision
        self.model = workload.make_model().to(self.device)
        if channels_last:  # as trainer.channels_last: the conv nets' weights in NHWC
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        T = workload.num_tasks
        if name == BARE:
            self.method = None
            extra, k = [], 1
        else:
            base, _, variant = name.partition("@")
            cfg = {**method_config(base), **(overrides or {})}
            self.method = methods.create(base, num_tasks=T, engine=engine, **cfg).to(self.device)
            self.method.checks_loss_values = False  # as the trainer: the step reads loss_flags itself
            if variant == "jacobian":  # the generic [T, D] path (DB-MTL's implementation before streaming)
                self.method._backward = partial(GradientMethod._backward, self.method)
            elif variant:
                raise SystemExit(f"unknown variant {name!r}; only <method>@jacobian")
            extra, k = self.method.trainable_parameters(), max(1, self.method.batches_per_step)
            if "val_batch" in self.method.needs:
                k += 1  # the last batch is the validation batch
            if "sample_losses" in self.method.needs and workload.sample_losses is None:
                raise SystemExit(f"{name} needs per-sample losses; workload {workload.name} has none")
        groups = [{"params": list(self.model.parameters())}] + ([{"params": extra}] if extra else [])
        self.opt = torch.optim.Adam(groups, lr=1e-4)
        self.steps = steps(precision, self.model.parameters(), self.device)  # fp16: GradScaler, as the trainer
        gen = torch.Generator().manual_seed(1)
        self.batches = [to_device(workload.make_batch(gen), self.device) for _ in range(k)]
        self.passes = 0
        self.peak_bytes = 0
        encoder = getattr(self.model, "encoder", None)
        if encoder is not None:
            encoder.register_forward_hook(self._hook_output)
        if compile:  # the forward pass through torch.compile (backend: inductor, aot_eager, ...)
            # T backward passes need retain_graph, which AOTAutograd's donated buffers forbid
            # ("compiled with non-empty donated buffers which requires ... retain_graph=False")
            import torch._functorch.config as functorch_config

            functorch_config.donated_buffer = False
            self.model.forward = torch.compile(self.model.forward, backend=compile)
        if self.method is not None:
            self.method.on_epoch_start(0)

    @property
    def engine(self) -> str:
        if not isinstance(self.method, GradientMethod):  # the bare loop and loss weighting: one way only
            return "-"
        return self.method.engine.chosen or self.method.engine.mode

    def _hook_output(self, module, inputs, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._count)

    def _count(self, grad):
        self.passes += 1

    def losses(self, batch, rep_grad=False):
        with autocast(self.precision, self.device):
            active = self.method.active_tasks() if self.method is not None else None
            kw = {} if active is None else {"tasks": active}  # STL: only its own head runs
            losses, rep = self.workload.compute_losses(self.model, batch, rep_grad=rep_grad, **kw)
        return losses.float(), rep

    def _step(self) -> None:
        self.opt.zero_grad(set_to_none=False)
        if self.method is None:  # the floor: T backward passes, plain sum in .grad, optimizer step
            losses, _ = self.losses(self.batches[0])
            self.steps.attach(losses)
            T = losses.shape[0]
            for t in range(T):
                losses[t].backward(retain_graph=t < T - 1)
            self.steps.step(self.opt)
            return
        method = self.method
        ctx = StepContext() if method.needs else None
        if ctx is not None and method.needs & {"passes", "val_batch"}:  # as the trainer's _step_context
            ctx.model, ctx.batch, ctx.optimizer, ctx.loss_fn = self.model, self.batches[0], self.opt, self._loss_fn
            ctx.val_batch = self.batches[-1] if "val_batch" in method.needs else None
            method.before_step(ctx)
        features = "features" in method.needs
        if ctx is not None and "sample_losses" in method.needs:
            with autocast(self.precision, self.device):
                per, rep = self.workload.sample_losses(self.model, self.batches[0], rep_grad=method.rep_grad or features)
            ctx.sample_losses = per.float()
            self.steps.attach(ctx.sample_losses)
            losses = ctx.sample_losses.mean(0)
        elif method.batches_per_step > 1:
            per_batch = [self.losses(b, rep_grad=method.rep_grad) for b in self.batches[: method.batches_per_step]]
            losses, rep = torch.stack([l for l, _ in per_batch]), None
        else:
            losses, rep = self.losses(self.batches[0], rep_grad=method.rep_grad or features)
        if ctx is not None:
            ctx.features = rep if features else None
        nonfinite, negative = loss_flags(method, losses).tolist()  # the trainer's one read per step
        if nonfinite or negative:
            raise RuntimeError(f"{method.name}: invalid losses {losses.tolist()}")
        self.steps.backward(method, losses, self.model.shared_parameters(), self.model.task_parameters(), rep=rep,
                            **({} if ctx is None else {"ctx": ctx}))
        if self.steps.step(self.opt) and method.wants_post_step_losses:
            with torch.no_grad():
                new, _ = self.losses(self.batches[0])
            method.after_step(new)

    def _loss_fn(self, model, batch) -> torch.Tensor:
        """StepContext.loss_fn: losses of `batch` under `model`, loss-scaled under fp16 (as the trainer)."""
        with autocast(self.precision, self.device):
            losses = self.workload.compute_losses(model, batch)[0]
        losses = losses.float()
        if model is self.model:  # a method's copy of the model has no unscaling hooks (as the trainer)
            self.steps.attach(losses)
        return losses

    def step(self) -> float:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        t0 = time.perf_counter()
        self._step()
        if cuda:
            torch.cuda.synchronize(self.device)
            # this runner's peak as if it ran alone: what it keeps between steps (model, gradients,
            # optimizer and method state) + what the step allocated on top of everything resident
            extra = torch.cuda.max_memory_allocated(self.device) - before
            self.peak_bytes = max(self.peak_bytes, self._resident_bytes() + extra)
        return time.perf_counter() - t0

    def _resident_bytes(self) -> int:
        seen, total = set(), 0

        def add(t):
            nonlocal total
            if isinstance(t, torch.Tensor) and t.device.type == "cuda" and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()

        for p in self.model.parameters():
            add(p)
            add(p.grad)
        for b in self.model.buffers():
            add(b)
        for state in self.opt.state.values():
            for v in state.values():
                add(v)
        if self.method is not None:
            for v in self.method.state_dict().values():
                if isinstance(v, dict):
                    for x in v.values():
                        add(x)
                else:
                    add(v)
        return total

    def count_flops(self) -> int | None:
        """FLOPs of one step (matrix work counted by FlopCounterMode; see mtl.perf.flops), or None
        where the counter cannot follow the step: its module hooks refuse `autograd.grad` with
        respect to a leaf (NTKMTL-SR's per-chunk gradients at the representation), a torch limit."""
        from torch.utils.flop_counter import FlopCounterMode

        try:
            with FlopCounterMode(display=False) as counter:
                self._step()
        except RuntimeError as err:
            if "_will_engine_execute_node" not in str(err):
                raise
            print(f"{self.name}: FLOPs not counted (FlopCounterMode cannot follow autograd.grad at a leaf)",
                  file=sys.stderr, flush=True)
            return None
        return int(counter.get_total_flops())

    def count_syncs(self) -> SyncCounter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        with SyncCounter(self.device) as counter:
            self._step()
        return counter


def run(workload: Workload, names: list[str], reps: int = 10, warmup: int = 2, engine: str = "loop",
        device: str = "cpu", precision: str = "fp32", log=print, peak: float | None = None,
        channels_last: bool = False, compile: str | None = None, flops: bool = True,
        ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Interleaved timing of `names` (bare_loop and ew are added first); returns (rows, skipped).
    Each row also has the step's counted FLOPs (one more step under FlopCounterMode), the achieved
    TFLOP/s at the median time and its fraction of `peak` TFLOP/s (None: the chip's data-sheet
    peak for this precision, or a measured matmul where none applies: `mtl.perf.flops.peak_tflops`)."""
    names = [BARE, "ew", *[n for n in names if n not in (BARE, "ew")]]
    runners, skipped = [], {}
    for name in names:
        try:
            runners.append(Runner(name, workload, engine, device, precision, channels_last=channels_last,
                                  compile=compile))
        except Exception as err:  # report and go on: one broken method must not hide the others
            skipped[name] = f"{type(err).__name__}: {err}"
    times: dict[str, list[float]] = {r.name: [] for r in runners}

    def drop(r, err):
        skipped[r.name] = f"{type(err).__name__}: {err}"
        runners.remove(r)
        del times[r.name]

    for r in list(runners):
        try:
            for _ in range(warmup):  # includes grad_engine=auto's one-off measurement
                r.step()
        except Exception as err:
            drop(r, err)
    passes0 = {r.name: r.passes for r in runners}
    for rep in range(reps):
        for r in list(runners):
            torch.manual_seed(rep)
            try:
                times[r.name].append(r.step())
            except Exception as err:
                drop(r, err)
        log(f"rep {rep + 1}/{reps} done")
    for ref in (BARE, "ew"):
        if ref not in times:
            raise SystemExit(f"{ref} failed: {skipped.get(ref)}")
    passes = {r.name: (r.passes - passes0[r.name]) / reps for r in runners}
    syncs = {r.name: r.count_syncs().count for r in runners}
    counted = {r.name: r.count_flops() for r in runners} if flops else {}
    if flops and peak is None:
        from mtl.perf.flops import peak_tflops

        peak, peak_source = peak_tflops(device, precision)
    else:
        peak_source = "given" if peak is not None else None
    now = dt.datetime.now().isoformat(timespec="seconds")

    def paired(name, ref):  # median over repetitions of the ratio of steps taken seconds apart
        return statistics.median(a / b for a, b in zip(times[name], times[ref]))

    rows = []
    for r in runners:
        ms = statistics.median(times[r.name]) * 1e3
        rows.append({"method": r.name, "median_ms": round(ms, 2), "ratio_to_bare_loop": round(paired(r.name, BARE), 3),
                     "ratio_to_ew": round(paired(r.name, "ew"), 3), "backward_passes_per_step": passes[r.name],
                     "host_syncs_per_step": syncs[r.name], **_flop_columns(counted.get(r.name), ms, peak, peak_source),
                     "engine": r.engine, "precision": precision, "channels_last": channels_last,
                     "compile": compile or "-",
                     "device": str(device), "peak_mib": round(r.peak_bytes / 2**20, 1) if r.peak_bytes else None,
                     "workload": workload.name, "machine": machine(workload.threads, device), "date": now})
    return pd.DataFrame(rows), skipped


def _flop_columns(flop: int | None, ms: float, peak: float | None, source: str | None) -> dict:
    if flop is None:
        return {}
    achieved = flop / (ms / 1e3) / 1e12
    sig = lambda x: float(f"{x:.4g}")  # noqa: E731  (4 significant digits: CPU and GPU scales alike)
    return {"gflop_per_step": sig(flop / 1e9), "achieved_tflops": sig(achieved),
            "peak_tflops": sig(peak) if peak else None,
            "peak_fraction": sig(achieved / peak) if peak else None, "peak_source": source}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="resnet18_office")
    ap.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--engine", default="loop", help="gradient engine mode: loop | batched | auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (autocast of the forward pass)")
    ap.add_argument("--peak", type=float, default=None,
                    help="peak TFLOP/s for the fraction column (default: data sheet, or a measured matmul)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC model (as trainer.channels_last)")
    ap.add_argument("--compile", default=None, help="torch.compile the forward with this backend (inductor, ...)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    workload = build_workload(args.workload)
    if workload.threads:
        torch.set_num_threads(workload.threads)
    names = args.methods or methods.available()
    df, skipped = run(workload, names, args.reps, args.warmup, args.engine, args.device, args.precision,
                      log=lambda s: print(s, file=sys.stderr, flush=True), peak=args.peak,
                      channels_last=args.channels_last, compile=args.compile)
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / f"step_{args.workload}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    cols = ["method", "median_ms", "ratio_to_bare_loop", "ratio_to_ew", "backward_passes_per_step",
            "host_syncs_per_step", "gflop_per_step", "achieved_tflops", "peak_fraction"]
    print(df[cols].to_string(index=False))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"wrote {out}")
