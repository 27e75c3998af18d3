"""The training loop. It knows no method or benchmark by name: a benchmark supplies data, model,
losses and metrics; a method turns per-task losses into gradients; the protocol (config) supplies
optimizer, schedule, epochs, selection rule and STL reference.

One run, in order: validate everything (nothing on disk touched yet) -> pick the device -> take the
run directory's writer lock -> check a resumed run's config against the stored one -> set up
benchmark, model, method, optimizer -> restore the checkpoint (moved to the run's device) -> fit
-> write summary.json. Checkpoints, the experiment logger and console output are callbacks
(mtl/run/callbacks.py) that the loop calls at fixed points; `trainer.callbacks` adds more.
"""
from __future__ import annotations

import itertools
import math
import platform
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mtl
from mtl.run import callbacks, precision
from mtl import methods
from mtl.methods.base import StepContext, check_losses, loss_flags
from mtl.benchmarks.base import Benchmark, to_device
from mtl.scoring.delta import delta_m, delta_p, delta_p_per_task
from mtl.run.device import apply_speed, describe, resolve_device, speed_settings
from mtl.errors import brief, ConfigChanged, DamagedFile, InvalidCombination, InvalidValue, MTLError, NonFiniteLoss, NonFiniteState, Preempted
from mtl.run.preemption import PreemptionGuard, set_phase
from mtl.run.resume import changed_keys, config_hash, describe as describe_changes
from mtl.run.rundir import CHECKPOINT, CONFIG, SUMMARY, RunDir, git_commit
from mtl.scoring.selection import improvement, select
from mtl.run.validate import validate


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The random number generators' states as tensors and plain values (checkpoints are read with
    torch.load(weights_only=True), which refuses numpy arrays)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]  # a requeued job may see fewer GPUs
        torch.cuda.set_rng_state_all(cuda)


def build_benchmark(cfg: DictConfig) -> Benchmark:
    """Instantiate the benchmark; our own errors (missing data, ...) surface unwrapped."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg.benchmark.build, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, MTLError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


class EpochStats:
    """Per-epoch aggregates of train losses and method diagnostics. Each diagnostic is reduced as
    its method declares (`Method.diagnostic_reductions`: mean, sum or last; mean by default);
    `weight` weighs a value in its mean (the train loss: the batch size, as LibMTL's epoch losses)."""

    def __init__(self, reductions: dict[str, str] | None = None):
        self.reductions = reductions or {}
        self.sums: dict[str, Any] = defaultdict(float)
        self.counts: dict[str, Any] = defaultdict(float)
        self.last: dict[str, Any] = {}

    def add(self, key: str, value: Any, weight: Any = 1) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().double()  # summed where it lives: no host sync per step
        elif not isinstance(value, (int, float)):
            return  # non-numeric diagnostics are not aggregated
        if not isinstance(weight, (int, float)):
            weight = torch.as_tensor(weight, dtype=torch.float64, device=getattr(value, "device", None))
        self.last[key] = value
        self.sums[key] = self.sums[key] + weight * value
        self.counts[key] = self.counts[key] + weight

    def mean(self, key: str) -> Any:
        return self.sums[key] / self.counts[key]

    def results(self) -> dict[str, Any]:
        out = {}
        for k, v in self.sums.items():
            how = self.reductions.get(k.removeprefix("method/"), "mean")
            agg = v if how == "sum" else self.last[k] if how == "last" else v / self.counts[k]
            out[k] = agg.tolist() if isinstance(agg, torch.Tensor) else float(agg)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v  # noqa: E731
        self.sums.update({k: move(v) for k, v in state["sums"].items()})
        self.counts.update({k: move(v) for k, v in state["counts"].items()})
        self.last.update({k: move(v) for k, v in state["last"].items()})


def closing_line(summary: dict[str, Any], path: Path) -> str:
    """The run's last line: the selected epoch (1-based) and its rule, test Δp/Δm, where the files are."""
    epoch = summary.get("selected_epoch")
    sel = f"epoch {epoch + 1} of {summary.get('epochs')}" if isinstance(epoch, int) else "no epoch"
    dp, dm = summary.get("delta_p"), summary.get("delta_m")
    fmt = lambda v: f"{v:+.2f} %" if isinstance(v, (int, float)) else "n/a"  # noqa: E731
    return (f"[mtl] done: {sel} selected by {summary.get('selection')}; test Δp {fmt(dp)} (higher is better), "
            f"Δm {fmt(dm)} (lower is better); results in {path}")


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.protocol = cfg.benchmark.protocol
        self.run_dir = RunDir(cfg.run.dir)
        self.checkpoint_epoch: int | None = None  # the epoch of the checkpoint on disk (None: none yet)
        self.final_dir: RunDir | None = None  # set while a forced re-run of a finished run trains aside

    # ------------------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        validate(cfg)  # everything checkable, before any file of the run directory is touched
        self.callbacks = callbacks.from_config(cfg)
        self.device = resolve_device(str(cfg.device), needs_gpu=bool(cfg.benchmark.get("needs_gpu", False)),
                                     benchmark=cfg.benchmark.name)
        if not cfg.run.force and self.run_dir.check_finished() and not self.run_dir.pending_promotion:
            return self._skip()
        with self.run_dir.lock(wait=bool(cfg.run.wait_for_lock)):
            self.run_dir.finish_promotion()  # a forced re-run that was killed while moving its files in
            if not cfg.run.force and self.run_dir.check_finished():  # finished while we waited
                return self._skip()
            self._check_config(fresh=bool(cfg.run.force))
            if cfg.run.force and self.run_dir.check_finished():
                # the finished result stays in place (and in tables) until the new one is complete:
                # the new run trains in <run>/.rerun/ and its files replace the old ones at the end
                self.final_dir, self.run_dir = self.run_dir, self.run_dir.staging()
            elif cfg.run.force:
                self.run_dir.delete_checkpoint()
            try:
                set_phase("setup (building the benchmark and its data)")
                self.setup()
                set_phase("setup (restoring the checkpoint)")
                self.state = self.resume()
                try:
                    self.fit()
                    set_phase("the end of the run (after the last epoch)")
                    self.finish()
                finally:
                    self._hook("on_close")
            except (torch.OutOfMemoryError, MemoryError) as err:
                raise self._out_of_memory(err) from None
            finally:
                set_phase("setup")
            if self.final_dir is not None:
                self.final_dir.promote(self.run_dir)
                self.run_dir = self.final_dir
        return self.run_dir.path

    def _out_of_memory(self, err: BaseException) -> MTLError:
        """Out of memory as one line: where, and the two settings that need less memory."""
        from mtl.errors import OutOfMemory

        state = getattr(self, "state", None)
        where = (f"in epoch {state['epoch'] + 1}" if state else "during setup")
        device = getattr(self, "device", "the device")
        what = "GPU" if getattr(device, "type", "") == "cuda" else "host (CPU)"
        keys = [k for k in ("batch_size", "train_batch_size", "eval_batch_size", "test_batch_size")
                if self.cfg.benchmark.build.get(k) is not None]
        sizes = ", ".join(f"benchmark.build.{k}={self.cfg.benchmark.build[k]}" for k in keys) or "the batch size"
        ckpt = self.run_dir.path / CHECKPOINT
        kept = f"the last checkpoint ({ckpt}) is kept and resumes" if ckpt.exists() else "nothing was saved yet"
        return OutOfMemory(
            f"{self.run_dir.path}: out of {what} memory on {device} {where} ({str(err).splitlines()[0][:120]}); "
            f"use a smaller batch (now {sizes}) or trainer.precision=bf16 (16-bit activations), or a device "
            f"with more memory; {kept}")

    def _hook(self, name: str, *args: Any) -> None:
        """Call hook `name` of every callback, in order (see mtl/run/callbacks.py)."""
        for callback in self.callbacks:
            getattr(callback, name)(self, self.state, *args)

    def _skip(self) -> Path:
        """A finished run is skipped only if it was trained with the settings asked for now."""
        self._check_finished_config()
        print(f"[mtl] {self.run_dir.path} is finished (summary.json exists); skipping. "
              f"Pass run.force=true to re-run.")
        return self.run_dir.path

    def _stored_config(self, beside: str) -> str:
        """The run directory's config.yaml; without it the settings of its `beside` file cannot be
        checked, so the run stops (the check is never skipped)."""
        stored = self.run_dir.read_config()
        if stored is None:
            raise ConfigChanged(
                f"{self.run_dir.path / CONFIG}: missing beside {beside}, so the settings it was made with "
                f"cannot be checked; restore config.yaml, or pass run.force=true to train this run again, "
                f"or set run.tag=<name> to train in a new run directory")
        return stored

    def _changes(self, stored: str, grow: bool) -> list[tuple[str, Any, Any]]:
        try:
            return changed_keys(stored, OmegaConf.to_container(self.cfg, resolve=True), grow=grow)
        except (ValueError, yaml.YAMLError) as err:
            raise DamagedFile(f"{self.run_dir.path / CONFIG}: damaged ({brief(err, 120)}); restore it, or pass "
                              f"run.force=true to train this run again") from None

    def _check_finished_config(self) -> None:
        changes = self._changes(self._stored_config(SUMMARY), grow=False)
        if changes:
            raise ConfigChanged(
                f"{self.run_dir.path}: finished with other settings ({describe_changes(changes)}); its "
                f"result is not one of the settings asked for. Pass run.force=true to train it again with "
                f"the new settings, or set run.tag=<name> to train them in a new run directory")

    def _check_config(self, fresh: bool) -> None:
        """A run directory resumes only the settings it was started with."""
        if fresh or not (self.run_dir.path / CHECKPOINT).exists():
            return
        changes = self._changes(self._stored_config(CHECKPOINT), grow=True)
        if changes:
            raise ConfigChanged(
                f"{self.run_dir.path / 'config.yaml'}: this run was started with other settings "
                f"({describe_changes(changes)}); resuming would continue the old training. Pass "
                f"run.force=true to restart it with the new settings, or set run.tag=<name> to train "
                f"them in a new run directory")

    def identity(self) -> dict[str, Any]:
        """What a checkpoint belongs to; a checkpoint of another run is refused on resume."""
        cfg = self.cfg
        return {"benchmark": str(cfg.benchmark.name), "method": str(cfg.method.name), "tag": str(cfg.run.tag),
                "seed": int(cfg.seed), "config_hash": config_hash(OmegaConf.to_container(cfg, resolve=True))}

    def _check_identity(self, ckpt: dict[str, Any]) -> None:
        path, mine = self.run_dir.path / CHECKPOINT, self.identity()
        theirs = ckpt.get("identity")
        fix = ("it was not loaded. Put it back where it came from, delete it or pass run.force=true to train "
               "this run from scratch, or set run.tag=<name> for a new run directory")
        if not isinstance(theirs, dict):
            raise DamagedFile(f"{path}: records no run it belongs to (written by other code or an older version "
                              f"of this suite); {fix}")
        names = ("benchmark", "method", "tag", "seed")
        if any(theirs.get(k) != mine[k] for k in names):
            them = f"{theirs.get('benchmark')}/{theirs.get('method')}{theirs.get('tag') or ''}/seed{theirs.get('seed')}"
            me = f"{mine['benchmark']}/{mine['method']}{mine['tag']}/seed{mine['seed']}"
            raise DamagedFile(f"{path}: a checkpoint of run {them}, not of this run ({me}); {fix}")
        if theirs.get("config_hash") != mine["config_hash"]:
            raise DamagedFile(f"{path}: written under other result-changing settings (config hash "
                              f"{theirs.get('config_hash')}, this run's is {mine['config_hash']}) than this "
                              f"run's config.yaml records; {fix}")

    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        seed_everything(int(cfg.seed))
        speed = speed_settings(str(cfg.trainer.get("speed", "exact")), bool(cfg.trainer.deterministic),
                               bool(cfg.trainer.get("channels_last", False)))
        apply_speed(speed)
        self.runtime = {**describe(self.device), "speed": speed["speed"],
                        "cudnn_deterministic": speed["deterministic"], "channels_last": speed["channels_last"],
                        "matmul_precision": speed["matmul_precision"]}
        print(f"[mtl] {cfg.benchmark.name} / {cfg.method.name} / seed {cfg.seed} on {self.runtime['device']}"
              + (f" ({self.runtime['gpu_name']})" if "gpu_name" in self.runtime else ""), flush=True)

        self.bench = bench = build_benchmark(cfg)
        for split in bench.splits():  # an empty split gives NaN metrics, on which selection would pick epoch 0
            loader = bench.loaders[split]
            if hasattr(loader, "__len__") and len(loader) == 0:
                raise InvalidValue(f"benchmark.build: the {split} split of {bench.name} has no samples; its "
                                   f"metrics would be NaN and {self.protocol.selection} selection meaningless; "
                                   f"give it samples (e.g. benchmark.build.n_{split}=64 for synthetic)")
        model = bench.model.to(self.device)
        self.precision = precision.check(str(cfg.trainer.get("precision", "fp32")))
        if speed["channels_last"]:  # NHWC kernels for the conv nets (no-op elsewhere)
            model = model.to(memory_format=torch.channels_last)
        method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
        name = method_cfg.pop("name")
        method = methods.create(name, num_tasks=len(bench.tasks), engine=cfg.grad_engine, **method_cfg)
        method.checks_loss_values = False  # the loop reads the loss flags itself (_check_losses)
        method.to(self.device)
        if method.rep_grad and not getattr(model, "supports_rep_grad", False):
            raise InvalidCombination(
                f"method {name} runs with rep_grad=true but the {bench.name} model "
                f"({type(model).__name__}) has no single shared representation; use rep_grad=false")
        if "features" in method.needs and not getattr(model, "supports_rep_grad", False):
            raise InvalidCombination(
                f"method {name} needs the shared representation but the {bench.name} model "
                f"({type(model).__name__}) has no single shared representation")
        if "sample_losses" in method.needs and not bench.has_sample_losses():
            raise InvalidCombination(
                f"method {name} needs per-sample losses, which benchmark {bench.name} does not provide "
                f"(it defines no `sample_losses`)")
        optimizer = self._optimizer(model, method)
        scheduler = instantiate(self.protocol.scheduler, optimizer=optimizer) if self.protocol.scheduler else None
        self.model, self.method, self.optimizer, self.scheduler = model, method, optimizer, scheduler
        self.steps = precision.steps(self.precision, model.parameters(), self.device)  # fp16: loss scaling
        self.run_name = f"{bench.name}/{name}{cfg.run.tag}/seed{cfg.seed}"
        self.epochs = int(cfg.trainer.epochs)

    def resume(self) -> dict[str, Any]:
        """The loop state: fresh, or restored from checkpoint.pt onto the run's device."""
        state: dict[str, Any] = {"history": [], "epoch": 0, "global_step": 0, "wall": 0.0, "partial": None}
        ckpt = self.run_dir.load_checkpoint() if self.cfg.run.checkpoint else None
        if ckpt is not None:
            self._check_identity(ckpt)
            try:
                self.model.load_state_dict(ckpt["model"])
                self.optimizer.load_state_dict(ckpt["optimizer"])  # moves its state to the params' device
                if self.scheduler is not None:
                    self.scheduler.load_state_dict(ckpt["scheduler"])
                self.method.load_state_dict(ckpt["method"])  # Method moves its state to its device
                self.steps.load_state_dict(ckpt.get("grad_scaler") or {})
            except (RuntimeError, KeyError, ValueError, TypeError) as err:
                raise DamagedFile(
                    f"{self.run_dir.path / CHECKPOINT}: does not fit this run's model or method "
                    f"({str(err).splitlines()[0][:160]}); delete it or pass run.force=true to train from "
                    f"scratch, or set run.tag=<name> for a new run directory") from None
            state.update(history=ckpt["history"], epoch=ckpt["epoch"] + 1, global_step=ckpt["global_step"],
                         wall=ckpt["wall_time_s"], partial=ckpt.get("partial"), rng=ckpt["rng"])
            self.checkpoint_epoch = ckpt["epoch"]
            where = f"after epoch {ckpt['epoch'] + 1}"  # 1-based, as every user-facing line
            if state["partial"]:
                where = f"in epoch {ckpt['epoch'] + 2} after step {state['partial']['steps']}"
            else:
                set_rng_state(ckpt["rng"])
            print(f"[mtl] resuming {self.run_dir.path} {where}", flush=True)
        config = OmegaConf.to_container(self.cfg, resolve=True)
        config["runtime"] = self.runtime
        self.run_dir.write_config(OmegaConf.to_yaml(OmegaConf.create(config)))
        self.run_dir.write_metrics(state["history"])
        return state

    def fit(self) -> None:
        """Train epochs state['epoch'] .. trainer.epochs-1. A preemption signal stops it after the
        current step: the callbacks save what a resume needs (on_preempt), then Preempted is raised."""
        state = self.state
        self._hook("on_fit_start")
        with PreemptionGuard() as self.guard:
            for epoch in range(state["epoch"], self.epochs):
                t0 = time.perf_counter()
                partial, state["partial"] = state["partial"], None
                train_stats, steps, done = self._train_epoch(epoch, state["global_step"], partial, state.get("rng"))
                state["global_step"] += steps
                if not done:  # stopped mid-epoch: a resume continues from this position
                    state["wall"] += time.perf_counter() - t0
                    state["partial"] = train_stats
                    break
                record = self._epoch_record(epoch, train_stats, t0)
                state["wall"] += record["epoch_time_s"]
                self._step_scheduler(record, state["history"])
                state["history"].append(record)
                state["epoch"] = epoch + 1
                self.run_dir.write_metrics(state["history"])
                self._hook("on_epoch_end", epoch, record)
                if self.guard.received is not None:
                    break
            if self.guard.received is not None:
                self._hook("on_preempt")
                self._stop_preempted()

    def _epoch_record(self, epoch: int, train_stats: dict[str, Any], t0: float) -> dict[str, Any]:
        """Epoch `epoch`'s row of metrics.jsonl: training aggregates, then evaluation (timed from t0)."""
        record = {"epoch": epoch, "steps": train_stats.pop("steps"), "train_time_s": time.perf_counter() - t0,
                  "lr": self.optimizer.param_groups[0]["lr"], **train_stats}
        record.update(self._evaluate())
        record["epoch_time_s"] = time.perf_counter() - t0
        return record

    def finish(self) -> None:
        summary = self._summary(self.state["history"], self.state["global_step"], self.state["wall"])
        self.run_dir.write_summary(summary)
        self._hook("on_fit_end", summary)
        print(closing_line(summary, self.run_dir.path), flush=True)

    def _stop_preempted(self) -> None:
        state, guard = self.state, self.guard
        # epochs in user-facing lines count from 1 (the files' "epoch" fields count from 0)
        where = (f"epoch {state['epoch'] + 1} step {state['partial']['steps']}" if state["partial"]
                 else f"the end of epoch {state['epoch']}")
        saved = (f"checkpoint saved at {where}" if self.cfg.run.checkpoint
                 else f"stopped at {where}, nothing saved (run.checkpoint=false: a re-run starts over)")
        guard.hand_on()  # submitit requeues the job and exits here
        raise Preempted(f"{guard.name}: {saved} in {self.run_dir.path}; re-run the same command (or requeue "
                        f"the job) to resume")

    def checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """The contents of checkpoint.pt (read back by `resume`): the state after the last finished
        epoch, plus the position within the next one if `state['partial']`."""
        sched = self.scheduler
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "method": self.method.state_dict(), "rng": rng_state(), "epoch": state["epoch"] - 1,
            "history": state["history"], "global_step": state["global_step"], "wall_time_s": state["wall"],
            "partial": state["partial"], "grad_scaler": self.steps.state_dict(), "identity": self.identity()}

    # ------------------------------------------------------------------------------------------
    def _optimizer(self, model, method) -> torch.optim.Optimizer:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        extra = method.trainable_parameters()
        if extra:
            group: dict[str, Any] = {"params": extra}
            for key in ("lr", "weight_decay"):
                value = self.protocol.method_params.get(key)
                if value is not None:
                    group[key] = value
            groups.append(group)
        return instantiate(self.protocol.optimizer, params=groups, _convert_="all")

    def _train_epoch(self, epoch: int, global_step: int, partial: dict[str, Any] | None = None,
                     rng: dict[str, Any] | None = None) -> tuple[dict[str, Any], int, bool]:
        """One epoch (or its rest, after a mid-epoch resume). Returns (epoch stats, steps taken in
        this call, finished); unfinished after a preemption signal, the stats are then the position
        to resume from: {"steps": steps of this epoch so far, "stats": accumulators}."""
        cfg, bench, model, method = self.cfg, self.bench, self.model, self.method
        model.train()
        seed = int(cfg.seed)
        k = method.batches_per_step
        # methods that consume several batches per step draw the extra ones from other shuffles of
        # the same loader (same length as the main iterator, so they never run out first)
        extra_iters = [bench.train_batches(epoch, seed + 7919 * (j + 1)) for j in range(k - 1)]
        # a method that needs a validation batch gets one per step from yet another shuffle
        if "val_batch" in method.needs:
            extra_iters.append(bench.train_batches(epoch, seed + 104729))
        batches = bench.train_batches(epoch, seed)
        total = bench.steps_per_epoch()
        if cfg.trainer.max_steps_per_epoch is not None:
            total = min(total, int(cfg.trainer.max_steps_per_epoch))
        stats = EpochStats(method.diagnostic_reductions)
        start = 0
        if partial is None:
            method.on_epoch_start(epoch)
        else:  # mid-epoch resume: the epoch's order depends only on (seed, epoch), so skip what was done
            start = int(partial["steps"])
            for it in (batches, *extra_iters):
                next(itertools.islice(it, start, start), None)
            stats.load_state_dict(partial["stats"], self.device)
            set_rng_state(rng)  # after skipping: loading batches may draw random numbers
        shared, task_params = model.shared_parameters(), model.task_parameters()
        self._hook("on_epoch_start", epoch, total, start)
        steps = start
        for batch in batches:
            if steps >= total:
                break
            if self.guard.received is not None:
                self._hook("on_steps_end", epoch)
                return {"steps": steps, "stats": stats.state_dict()}, steps - start, False
            batch = to_device(batch, self.device)
            ctx = self._step_context(batch, extra_iters) if method.needs else None
            if ctx is not None and ctx.loss_fn is not None:
                method.before_step(ctx)  # bilevel methods: extra passes before this step's forward
            with precision.autocast(self.precision, self.device):  # forward + losses (fp32: no-op)
                if ctx is not None and "sample_losses" in method.needs:
                    per, rep = bench.sample_losses(model, batch, rep_grad=method.rep_grad or "features" in method.needs)
                    ctx.sample_losses = per.float()
                    losses = ctx.sample_losses.mean(0)
                elif k == 1:
                    # a method training a subset of the tasks (STL) gets only those heads computed
                    active = method.active_tasks()
                    losses, rep = bench.compute_losses(model, batch, rep_grad=method.rep_grad or "features" in method.needs,
                                                       **({} if active is None else {"tasks": active}))
                else:
                    rows = [bench.compute_losses(model, batch)[0]]
                    for it in extra_iters[: k - 1]:
                        rows.append(bench.compute_losses(model, to_device(next(it), self.device))[0])
                    losses, rep = torch.stack(rows), None
            if ctx is not None:
                ctx.features = rep if "features" in method.needs else None
                if ctx.sample_losses is not None:
                    self.steps.attach(ctx.sample_losses)  # fp16: their backward is loss-scaled as the losses'
            losses = losses.float()  # methods (log transforms, EMAs, solvers) see fp32 losses
            self._check_losses(losses, epoch, global_step + steps - start)
            self.optimizer.zero_grad(set_to_none=False)
            size = bench.batch_size(batch)
            info = self.steps.backward(method, losses, shared, task_params, rep=rep, batch_size=size,
                                       **({} if ctx is None else {"ctx": ctx}))
            stepped = self.steps.step(self.optimizer)  # False: fp16 step skipped on inf/NaN gradients
            if method.wants_post_step_losses and stepped:
                with torch.no_grad():
                    method.after_step(bench.compute_losses(model, batch)[0])
            row = losses.detach() if losses.dim() == 1 else losses.detach().mean(0)
            stats.add("train_loss", row, weight=size)
            for key, value in info.items():
                stats.add(f"method/{key}", value)
            steps += 1
            self._hook("on_step_end", global_step + steps - start, stats)
        self._hook("on_steps_end", epoch)
        method.on_epoch_end(epoch)
        out = stats.results()
        out["train_loss"] = dict(zip(bench.task_names, out.get("train_loss", [])))
        out["backward_passes"] = method.engine.backward_passes
        out["steps"] = steps
        return out, steps - start, True

    def _step_context(self, batch, extra_iters) -> StepContext:
        """What the method's `needs` asks for that exists before the forward (the features and
        per-sample losses are filled in by the forward)."""
        needs = self.method.needs
        ctx = StepContext()
        if needs & {"passes", "val_batch"}:
            ctx.model, ctx.batch, ctx.optimizer, ctx.loss_fn = self.model, batch, self.optimizer, self._loss_fn
        if "val_batch" in needs:
            ctx.val_batch = to_device(next(extra_iters[-1]), self.device)
        return ctx

    def _loss_fn(self, model, batch) -> torch.Tensor:
        """Per-task losses [T] of `batch` under `model` (the network or a method's copy of it), with
        the step's precision. Under fp16 the network's backward is loss-scaled like the step's own
        (its parameters' hooks unscale the gradients); a copy's parameters carry no such hooks, so
        the losses of a copy are not scaled."""
        with precision.autocast(self.precision, self.device):
            losses = self.bench.compute_losses(model, batch)[0]
        losses = losses.float()
        if model is self.model:
            self.steps.attach(losses)
        return losses

    def _check_losses(self, losses: torch.Tensor, epoch: int, step: int) -> None:
        """Non-finite losses stop the run; a negative loss under a log-taking method is the method's
        InvalidLoss. Both flags are read with one host sync."""
        nonfinite, negative = loss_flags(self.method, losses).tolist()
        if not nonfinite:
            if negative:
                check_losses(self.method, losses, force=True)  # raises InvalidLoss naming the task
            return
        rows = losses.detach().reshape(-1, losses.shape[-1])  # [batches_per_step, T]
        b, t = (~torch.isfinite(rows)).nonzero()[0].tolist()
        value = rows[b, t].item()
        kept = self._kept()
        raise NonFiniteLoss(
            f"non-finite loss at step {step} (epoch {epoch + 1}): task {self.bench.task_names[t]!r} = {value}; "
            f"{kept}. Lower the learning rate or check the data, then restart with run.force=true "
            f"(re-running as is resumes the checkpoint) or train in a new directory with run.tag=<name>")

    def _kept(self) -> str:
        """What a run stopped by non-finite numbers leaves behind, truthfully."""
        ckpt = self.run_dir.path / CHECKPOINT
        if self.checkpoint_epoch is None or not ckpt.exists():
            return "no checkpoint was written yet"
        return f"the last good checkpoint (after epoch {self.checkpoint_epoch}) is kept at {ckpt}"

    def check_finite(self, state: dict[str, Any]) -> None:
        """Raise NonFiniteState if a parameter or buffer of the model or method, or a metric of the
        last evaluated epoch, is NaN or infinite (one host sync for the tensors)."""
        named = [(f"model.{n}", t) for n, t in itertools.chain(self.model.named_parameters(), self.model.named_buffers())]
        named += [(f"method.{n}", t) for n, t in itertools.chain(self.method.named_parameters(), self.method.named_buffers())]
        named = [(n, t) for n, t in named if t.is_floating_point() and t.numel()]
        bad = None
        if named and not bool(torch.stack([torch.isfinite(t).all() for _, t in named]).all()):
            bad = next(n for n, t in named if not bool(torch.isfinite(t).all()))
            what = f"parameter {bad} is not finite"
        elif len(state["history"]) > 1 and state["partial"] is None:
            # a metric that was finite an epoch ago and is not now (one that is NaN from the start is
            # structural, e.g. no valid pixels in a tiny fixture; an empty split is refused in setup)
            record, prev = state["history"][-1], state["history"][-2]
            for split in ("val", "test"):
                for task, values in (record.get(split) or {}).items():
                    for metric, value in values.items():
                        before = ((prev.get(split) or {}).get(task) or {}).get(metric)
                        if (bad is None and isinstance(value, (int, float)) and not math.isfinite(value)
                                and isinstance(before, (int, float)) and math.isfinite(before)):
                            bad, what = f"{split}/{task}/{metric}", f"{split} metric {task}/{metric} = {value}"
        if bad is None:
            return
        epoch = state["epoch"] if state["partial"] is None else state["epoch"] + 1  # 1-based, as every printed line
        raise NonFiniteState(
            f"after epoch {epoch} (step {state['global_step']}) {what} although the losses were finite; "
            f"this state was not saved and {self._kept()}. Lower the learning rate or check the data, then "
            f"restart with run.force=true (re-running as is resumes that checkpoint and may fail the same "
            f"way) or train in a new directory with run.tag=<name>")

    def _evaluate(self) -> dict[str, Any]:
        self.model.eval()
        out: dict[str, Any] = {}
        for split in self.bench.splits():
            metrics = self.bench.evaluate(self.model, split, self.device)
            out[split] = metrics
            for key, value in self.deltas(metrics).items():
                out[f"{split}_{key}"] = value
        self.model.train()
        return out

    def _active_tasks(self):
        active = self.method.active_tasks()
        return self.bench.tasks if active is None else [self.bench.tasks[i] for i in active]

    def deltas(self, metrics) -> dict[str, Any]:
        """Δp against `reference`, Δm against `reference_m` (if given, else `reference`), over the
        tasks the method trains (all but for single-task runs)."""
        tasks = self._active_tasks()
        ref = OmegaConf.to_container(self.protocol.reference.metrics, resolve=True)
        ref_m_cfg = self.protocol.get("reference_m")
        ref_m = OmegaConf.to_container(ref_m_cfg.metrics, resolve=True) if ref_m_cfg else ref
        return {"delta_p": delta_p(metrics, ref, tasks), "delta_m": delta_m(metrics, ref_m, tasks),
                "delta_p_per_task": delta_p_per_task(metrics, ref, tasks)}

    def improvement(self, metrics, base) -> float:
        """LibMTL's improvement of `metrics` over `base` (the run's own epoch-0 results), same tasks as Δ."""
        return improvement(metrics, base, self._active_tasks())

    def _step_scheduler(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.protocol.get("monitor") or "val_improvement"
            split, _, key = monitor.partition("_")
            if key == "improvement" and split in record:
                # LibMTL Trainer.train: scheduler.step(improvement over this split's epoch-0 results)
                base = (history[0] if history else record)[split]
                value = self.improvement(record[split], base)
            elif monitor in record:
                value = record[monitor]
            else:
                raise KeyError(f"scheduler monitors {monitor!r}, which this benchmark does not produce; set "
                               f"benchmark.protocol.monitor to <split>_improvement or one of "
                               f"{sorted(k for k in record if 'delta' in k)}")
            self.scheduler.step(value)
        else:
            self.scheduler.step()

    def _summary(self, history, global_step, wall) -> dict[str, Any]:
        rules = list(self.protocol.get("report") or [self.protocol.selection])
        if self.protocol.selection not in rules:
            rules.insert(0, self.protocol.selection)
        # epoch0: LibMTL's improvement over the run's own epoch-0 results; stl: Δp/Δm vs `reference`
        baseline = self.protocol.get("selection_baseline") or "epoch0"
        ties = self.protocol.get("selection_ties") or "earliest"
        delta = self.protocol.get("delta")
        delta = OmegaConf.to_container(delta) if OmegaConf.is_config(delta) else delta
        try:
            reported = {rule: select(history, rule, self.deltas, baseline=baseline, ties=ties, delta=delta,
                                     improvement_fn=self.improvement)
                        for rule in rules if rule != "best_val" or "val" in history[0]}
        except ValueError as err:
            raise InvalidValue(f"benchmark.protocol.selection={self.protocol.selection}: {err}") from None
        chosen = reported[self.protocol.selection]
        cfg = self.cfg
        return {
            "benchmark": cfg.benchmark.name, "method": cfg.method.name, "tag": cfg.run.tag, "seed": int(cfg.seed),
            "selection": self.protocol.selection, "selected_epoch": chosen["epoch"],
            "selection_baseline": chosen.get("baseline"), "selection_ties": ties if "baseline" in chosen else None,
            "metrics": chosen["metrics"], "delta_p": chosen["delta_p"], "delta_m": chosen["delta_m"],
            "delta_p_per_task": chosen["delta_p_per_task"], "reported": reported,
            "reference_source": self.protocol.reference.source,
            "epochs": len(history), "steps": global_step,
            "backward_passes": self.method.engine.backward_passes, "wall_time_s": wall,
            "solver_failures": int(sum(r.get("method/solver_failures", 0) for r in history)),
            **self.runtime,
            "versions": {"mtl": mtl.__version__, "torch": torch.__version__, "python": platform.python_version()},
            "git_commit": git_commit(),
        }
