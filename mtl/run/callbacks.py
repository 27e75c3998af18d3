"""What happens around the training loop: checkpoints, the experiment logger, console output.

The trainer's loop calls these hooks in this order (a resumed run starts at its checkpoint's epoch):

    on_fit_start
    per epoch:  on_epoch_start, on_step_end (per step), on_steps_end, on_epoch_end
    on_preempt  (a preemption signal stopped the loop; the trainer then raises Preempted)
    on_fit_end  (summary.json is written)
    on_close    (always, last, also when fit or finish raised)

Every hook receives the trainer and the loop state (`history`, `epoch`: the next epoch to train,
`global_step`, `wall`, `partial`: the position within an unfinished epoch). The trainer's own callbacks
come first (checkpointing, logger, console), then those listed in `trainer.callbacks` (Hydra
`_target_` entries, empty by default).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mtl.errors import InvalidValue

if TYPE_CHECKING:
    from mtl.run.trainer import EpochStats, Trainer

State = dict[str, Any]


class Callback:
    """No-op hooks; a callback overrides the ones it needs."""

    def on_fit_start(self, trainer: Trainer, state: State) -> None:
        """Before the first epoch of this process (state['epoch'] > 0 on a resumed run)."""

    def on_epoch_start(self, trainer: Trainer, state: State, epoch: int, total: int, done: int) -> None:
        """Epoch `epoch` trains `total` steps, of which `done` ran before a mid-epoch resume."""

    def on_step_end(self, trainer: Trainer, state: State, step: int, stats: EpochStats) -> None:
        """After the optimizer step; `step` counts the run's steps so far (1 after its first).
        `stats` holds the epoch's running aggregates: reading them syncs with the device."""

    def on_steps_end(self, trainer: Trainer, state: State, epoch: int) -> None:
        """The epoch's training steps are over (all, or up to a preemption signal); evaluation follows."""

    def on_epoch_end(self, trainer: Trainer, state: State, epoch: int, record: dict[str, Any]) -> None:
        """After evaluation: `record` is in state['history'] and metrics.jsonl."""

    def on_preempt(self, trainer: Trainer, state: State) -> None:
        """A preemption signal stopped training: state['partial'] is the position within the epoch
        (None when it stopped after a whole epoch)."""

    def on_fit_end(self, trainer: Trainer, state: State, summary: dict[str, Any]) -> None:
        """All epochs trained and summary.json written."""

    def on_close(self, trainer: Trainer, state: State) -> None:
        """Last, whether training finished, was preempted or raised."""


class Checkpointing(Callback):
    """checkpoint.pt every `every` epochs, after the last epoch and on a preemption signal (atomic
    writes, see RunDir.save_checkpoint); nothing when disabled (run.checkpoint=false). Without `keep`
    the checkpoint is deleted once summary.json is written."""

    def __init__(self, enabled: bool, every: int, keep: bool):
        self.enabled, self.every, self.keep = enabled, every, keep
        self.saved_step: int | None = None  # global step of the checkpoint this process last wrote

    def save(self, trainer: Trainer, state: State) -> None:
        trainer.check_finite(state)  # never replace the last good checkpoint with NaN weights
        trainer.run_dir.save_checkpoint(trainer.checkpoint(state))
        self.saved_step = state["global_step"]
        trainer.checkpoint_epoch = state["epoch"] - 1

    def on_epoch_end(self, trainer, state, epoch, record) -> None:
        if self.enabled and ((epoch + 1) % self.every == 0 or epoch == trainer.epochs - 1):
            self.save(trainer, state)

    def on_preempt(self, trainer, state) -> None:
        if self.enabled and self.saved_step != state["global_step"]:
            self.save(trainer, state)

    def on_fit_end(self, trainer, state, summary) -> None:
        if not self.keep:
            trainer.run_dir.delete_checkpoint()


class Logging(Callback):
    """The experiment logger of mtl/run/loggers.py (W&B or none): config at the start, one record per
    epoch, the summary at the end."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.logger = None

    def on_fit_start(self, trainer, state) -> None:
        from mtl.run.loggers import make_logger

        self.logger = make_logger(self.cfg, trainer.run_name, OmegaConf.to_container(trainer.cfg, resolve=True))

    def on_epoch_end(self, trainer, state, epoch, record) -> None:
        self.logger.log_epoch(record, step=epoch)

    def on_fit_end(self, trainer, state, summary) -> None:
        self.logger.log_summary(summary)

    def on_close(self, trainer, state) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


class Console(Callback):
    """A progress bar per epoch on a terminal, plain lines elsewhere (mtl/run/progress.py, on stderr);
    a line per epoch with val/test Δp, and a warning for an epoch with solver failures (stdout)."""

    def __init__(self, enabled: bool, log_every: int | None):
        self.enabled, self.log_every = enabled, log_every
        self.bar = None

    def on_epoch_start(self, trainer, state, epoch, total, done) -> None:
        from mtl.run.progress import Progress

        self.bar = Progress(total, epoch, trainer.epochs, task_names=trainer.bench.task_names,
                            enabled=self.enabled, log_every=self.log_every, stream=sys.stderr)
        if done:
            self.bar.update(done)

    def on_step_end(self, trainer, state, step, stats) -> None:
        self.bar.update(1, losses=lambda: stats.mean("train_loss").tolist())

    def on_steps_end(self, trainer, state, epoch) -> None:
        self.bar.close()

    def on_epoch_end(self, trainer, state, epoch, record) -> None:
        print(epoch_line(record), flush=True)
        failures = {k: v for k, v in record.items() if k.startswith("method/solver_failures") and v}
        if failures:
            print(f"[mtl] warning: epoch {epoch + 1} had solver failures {failures} "
                  f"(per-step details in the log; counts in metrics.jsonl)", flush=True)


def epoch_line(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch'] + 1}"]  # 1-based in every user-facing line (metrics.jsonl: from 0)
    for split in ("val", "test"):
        if f"{split}_delta_p" in r:
            parts.append(f"{split} Δp {r[f'{split}_delta_p']:+.2f}")
    parts.append(f"{r['epoch_time_s']:.1f}s")
    return "[mtl] " + " | ".join(parts)


def from_config(cfg: DictConfig) -> list[Callback]:
    """The trainer's callbacks for `cfg`, then those of `trainer.callbacks`, instantiated (before any
    run file is touched, so a wrong entry stops the run with nothing written)."""
    from hydra.utils import instantiate

    callbacks: list[Callback] = [
        Checkpointing(bool(cfg.run.checkpoint), int(cfg.trainer.checkpoint_every), bool(cfg.run.keep_checkpoint)),
        Logging(OmegaConf.to_container(cfg.logger, resolve=True)),
        Console(bool(cfg.trainer.progress), cfg.trainer.get("log_every_steps")),
    ]
    extra = cfg.trainer.get("callbacks")
    extra = [] if extra is None else extra
    if not OmegaConf.is_list(extra) and not isinstance(extra, list):
        raise InvalidValue(f"trainer.callbacks={extra!r}: must be a list of {{_target_: module.Class, ...}} "
                           f"entries, e.g. trainer.callbacks=[{{_target_:mtl.run.testing.Recorder,path:hooks.jsonl}}]")
    for i, spec in enumerate(extra):
        target = spec.get("_target_") if OmegaConf.is_dict(spec) else None
        if target is None:
            raise InvalidValue(f"trainer.callbacks[{i}]={spec!r}: not a {{_target_: module.Class, ...}} entry; "
                               f"name the callback class with _target_")
        try:
            callback = instantiate(spec)
        except Exception as err:  # noqa: BLE001 - an import or argument error of any kind: one line
            cause = err.__cause__ or err
            raise InvalidValue(f"trainer.callbacks[{i}]: {target} cannot be created ({type(cause).__name__}: "
                               f"{str(cause).splitlines()[0][:160]}); check the class path (importable from "
                               f"the working directory) and its arguments") from None
        if not isinstance(callback, Callback):
            raise InvalidValue(f"trainer.callbacks[{i}]: {target} is a {type(callback).__name__}, not a "
                               f"mtl.run.callbacks.Callback; derive it from that class")
        callbacks.append(callback)
    return callbacks
