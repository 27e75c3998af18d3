"""The training loop. It knows no method or benchmark by name: a benchmark supplies data, model,
losses and metrics; a method turns per-task losses into gradients; the protocol (config) supplies
optimizer, schedule, epochs, selection rule and STL reference."""
from __future__ import annotations

import os
import platform
import signal
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mtl
from mtl import methods, precision
from mtl.benchmark import Benchmark, to_device
from mtl.delta import delta_m, delta_p, delta_p_per_task
from mtl.errors import InvalidCombination, MTLError, NonFiniteLoss
from mtl.loggers import make_logger
from mtl.results import CHECKPOINT, SUMMARY, RunDir, git_commit
from mtl.selection import select


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} requested but CUDA is not available; use device=cpu or device=auto")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    """Running means of train losses and method diagnostics over one epoch (failures are summed)."""

    def __init__(self):
        self.sums: dict[str, Any] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().double()  # summed where it lives: no host sync per step
        elif not isinstance(value, (int, float)):
            return  # non-numeric diagnostics are not aggregated
        self.sums[key] = self.sums[key] + value
        self.counts[key] += 1

    def means(self) -> dict[str, Any]:
        out = {}
        for k, v in self.sums.items():
            agg = v if "failures" in k else v / self.counts[k]
            out[k] = agg.tolist() if isinstance(agg, torch.Tensor) else float(agg)
        return out


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.protocol = cfg.benchmark.protocol
        self.run_dir = RunDir(cfg.run.dir)

    # ------------------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        if self.run_dir.finished and not cfg.run.force:
            print(f"[mtl] {self.run_dir.path} is finished (summary.json exists); skipping. "
                  f"Pass run.force=true to re-run.")
            return self.run_dir.path
        if cfg.run.force:
            for name in (SUMMARY, CHECKPOINT):
                (self.run_dir.path / name).unlink(missing_ok=True)
        self.run_dir.create()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        seed_everything(int(cfg.seed))
        self.device = resolve_device(cfg.device)

        bench = build_benchmark(cfg)
        self.bench = bench
        model = bench.model.to(self.device)
        self.precision = precision.check(str(cfg.trainer.get("precision", "fp32")))
        if self.precision == "fp16":
            raise InvalidCombination(
                "trainer.precision=fp16 needs a gradient scaler that per-task gradient methods unscale "
                "before they combine, which is not implemented; use trainer.precision=bf16 (no scaler "
                "needed) or fp32")
        if cfg.trainer.get("channels_last", False):  # NHWC kernels for the conv nets (no-op elsewhere)
            model = model.to(memory_format=torch.channels_last)
        method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
        name = method_cfg.pop("name")
        method = methods.create(name, num_tasks=len(bench.tasks), engine=cfg.grad_engine, **method_cfg)
        method.to(self.device)
        if method.rep_grad and not getattr(model, "supports_rep_grad", False):
            raise InvalidCombination(
                f"method {name} runs with rep_grad=true but the {bench.name} model "
                f"({type(model).__name__}) has no single shared representation; use rep_grad=false")
        optimizer = self._optimizer(model, method)
        scheduler = instantiate(self.protocol.scheduler, optimizer=optimizer) if self.protocol.scheduler else None
        self.model, self.method, self.optimizer, self.scheduler = model, method, optimizer, scheduler

        history: list[dict[str, Any]] = []
        start_epoch, global_step, wall = 0, 0, 0.0
        ckpt = self.run_dir.load_checkpoint() if cfg.run.checkpoint else None
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            method.load_state_dict(ckpt["method"])
            set_rng_state(ckpt["rng"])
            history, start_epoch = ckpt["history"], ckpt["epoch"] + 1
            global_step, wall = ckpt["global_step"], ckpt["wall_time_s"]
            print(f"[mtl] resuming {self.run_dir.path} after epoch {ckpt['epoch']}")
        self.run_dir.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        self.run_dir.write_metrics(history)

        run_name = f"{bench.name}/{name}{cfg.run.tag}/seed{cfg.seed}"
        logger = make_logger(OmegaConf.to_container(cfg.logger, resolve=True), run_name,
                             OmegaConf.to_container(cfg, resolve=True))
        epochs = int(cfg.trainer.epochs)
        try:
            for epoch in range(start_epoch, epochs):
                t0 = time.perf_counter()
                train_stats, steps = self._train_epoch(epoch, global_step)
                global_step += steps
                train_time = time.perf_counter() - t0
                record = {"epoch": epoch, "steps": steps, "train_time_s": train_time,
                          "lr": optimizer.param_groups[0]["lr"], **train_stats}
                record.update(self._evaluate())
                record["epoch_time_s"] = time.perf_counter() - t0
                wall += record["epoch_time_s"]
                self._step_scheduler(record)
                history.append(record)
                if cfg.run.checkpoint:
                    self.run_dir.save_checkpoint({
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "method": method.state_dict(), "rng": rng_state(), "epoch": epoch,
                        "history": history, "global_step": global_step, "wall_time_s": wall})
                self.run_dir.write_metrics(history)
                logger.log_epoch(record, step=epoch)
                print(self._epoch_line(record), flush=True)
                failures = {k: v for k, v in record.items() if "failures" in k and v}
                if failures:
                    print(f"[mtl] warning: epoch {epoch} had solver failures {failures} "
                          f"(per-step details in the log; counts in metrics.jsonl)", flush=True)
                if cfg.trainer.kill_after_epoch is not None and epoch == int(cfg.trainer.kill_after_epoch):
                    os.kill(os.getpid(), signal.SIGKILL)  # simulate a crash: no cleanup runs
            summary = self._summary(history, global_step, wall)
            self.run_dir.write_summary(summary)
            logger.log_summary(summary)
        finally:
            logger.close()
        return self.run_dir.path

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

    def _train_epoch(self, epoch: int, global_step: int) -> tuple[dict[str, Any], int]:
        cfg, bench, model, method = self.cfg, self.bench, self.model, self.method
        model.train()
        method.on_epoch_start(epoch)
        seed = int(cfg.seed)
        k = method.batches_per_step
        # methods that consume several batches per step draw the extra ones from other shuffles of
        # the same loader (same length as the main iterator, so they never run out first)
        extra_iters = [bench.train_batches(epoch, seed + 7919 * (j + 1)) for j in range(k - 1)]
        total = bench.steps_per_epoch()
        if cfg.trainer.max_steps_per_epoch is not None:
            total = min(total, int(cfg.trainer.max_steps_per_epoch))
        stats = EpochStats()
        shared, task_params = model.shared_parameters(), model.task_parameters()
        bar = _progress(total, f"epoch {epoch + 1}/{cfg.trainer.epochs}", cfg.trainer.progress)
        steps = 0
        for batch in bench.train_batches(epoch, seed):
            if steps >= total:
                break
            batch = to_device(batch, self.device)
            with precision.autocast(self.precision, self.device):  # forward + losses (fp32: no-op)
                if k == 1:
                    # a method training a subset of the tasks (STL) gets only those heads computed
                    active = method.active_tasks()
                    losses, rep = bench.compute_losses(model, batch, rep_grad=method.rep_grad,
                                                       **({} if active is None else {"tasks": active}))
                else:
                    rows = [bench.compute_losses(model, batch)[0]]
                    for it in extra_iters:
                        rows.append(bench.compute_losses(model, to_device(next(it), self.device))[0])
                    losses, rep = torch.stack(rows), None
            losses = losses.float()  # methods (log transforms, EMAs, solvers) see fp32 losses
            self._check_finite(losses, epoch, global_step + steps)
            self.optimizer.zero_grad(set_to_none=False)
            info = method.backward(losses, shared, task_params, rep=rep)
            self.optimizer.step()
            if method.wants_post_step_losses:
                with torch.no_grad():
                    method.after_step(bench.compute_losses(model, batch)[0])
            row = losses.detach() if losses.dim() == 1 else losses.detach().mean(0)
            stats.add("train_loss", row)
            for key, value in info.items():
                stats.add(f"method/{key}", value)
            steps += 1
            bar.update(1)
            bar.set_postfix_str(" ".join(f"{v:.3g}" for v in (stats.sums["train_loss"] / steps).tolist()))
        bar.close()
        method.on_epoch_end(epoch)
        out = stats.means()
        out["train_loss"] = dict(zip(bench.task_names, out.get("train_loss", [])))
        out["backward_passes"] = method.engine.backward_passes
        return out, steps

    def _check_finite(self, losses: torch.Tensor, epoch: int, step: int) -> None:
        if bool(torch.isfinite(losses).all()):
            return
        rows = losses.detach().reshape(-1, losses.shape[-1])  # [batches_per_step, T]
        b, t = (~torch.isfinite(rows)).nonzero()[0].tolist()
        value = rows[b, t].item()
        ckpt = self.run_dir.path / CHECKPOINT
        kept = f"the last good checkpoint is kept at {ckpt}" if ckpt.exists() else "no checkpoint was written yet"
        raise NonFiniteLoss(
            f"non-finite loss at step {step} (epoch {epoch}): task {self.bench.task_names[t]!r} = {value}; "
            f"{kept}. Lower the learning rate or check the data.")

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

    def deltas(self, metrics) -> dict[str, Any]:
        """Δp against `reference`, Δm against `reference_m` (if given, else `reference`), over the
        tasks the method trains (all but for single-task runs)."""
        active = self.method.active_tasks()
        tasks = self.bench.tasks if active is None else [self.bench.tasks[i] for i in active]
        ref = OmegaConf.to_container(self.protocol.reference.metrics, resolve=True)
        ref_m_cfg = self.protocol.get("reference_m")
        ref_m = OmegaConf.to_container(ref_m_cfg.metrics, resolve=True) if ref_m_cfg else ref
        return {"delta_p": delta_p(metrics, ref, tasks), "delta_m": delta_m(metrics, ref_m, tasks),
                "delta_p_per_task": delta_p_per_task(metrics, ref, tasks)}

    def _step_scheduler(self, record: dict[str, Any]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.protocol.get("monitor") or "val_delta_p"
            if monitor not in record:
                raise KeyError(f"scheduler monitors {monitor!r}, which this benchmark does not produce "
                               f"(has {sorted(k for k in record if 'delta' in k)})")
            self.scheduler.step(record[monitor])
        else:
            self.scheduler.step()

    def _summary(self, history, global_step, wall) -> dict[str, Any]:
        rules = list(self.protocol.get("report") or [self.protocol.selection])
        if self.protocol.selection not in rules:
            rules.insert(0, self.protocol.selection)
        reported = {rule: select(history, rule, self.deltas) for rule in rules
                    if rule != "best_val" or "val" in history[0]}
        chosen = reported[self.protocol.selection]
        cfg = self.cfg
        return {
            "benchmark": cfg.benchmark.name, "method": cfg.method.name, "tag": cfg.run.tag, "seed": int(cfg.seed),
            "selection": self.protocol.selection, "selected_epoch": chosen["epoch"],
            "metrics": chosen["metrics"], "delta_p": chosen["delta_p"], "delta_m": chosen["delta_m"],
            "delta_p_per_task": chosen["delta_p_per_task"], "reported": reported,
            "reference_source": self.protocol.reference.source,
            "epochs": len(history), "steps": global_step,
            "backward_passes": self.method.engine.backward_passes, "wall_time_s": wall,
            "solver_failures": sum(v for r in history for k, v in r.items() if "failures" in k),
            "device": str(self.device),
            "versions": {"mtl": mtl.__version__, "torch": torch.__version__, "python": platform.python_version()},
            "git_commit": git_commit(),
        }

    @staticmethod
    def _epoch_line(r: dict[str, Any]) -> str:
        parts = [f"epoch {r['epoch']}"]
        for split in ("val", "test"):
            if f"{split}_delta_p" in r:
                parts.append(f"{split} Δp {r[f'{split}_delta_p']:+.2f}")
        parts.append(f"{r['epoch_time_s']:.1f}s")
        return "[mtl] " + " | ".join(parts)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)
