"""Test-only callbacks: crash or signal a training process at a chosen point, and record the hooks
the trainer calls. No benchmark run uses them; tests attach them through `trainer.callbacks`, e.g.
`python -m mtl.train ... "trainer.callbacks=[{_target_:mtl.run.testing.KillAfterEpoch,epoch:0}]"`
(the helpers below write these overrides).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from signal import SIGKILL, Signals
from typing import Any

from mtl.run.callbacks import Callback


class KillAfterEpoch(Callback):
    """SIGKILL this process after epoch `epoch`'s end-of-epoch hooks (checkpoint, metrics.jsonl,
    logger, console line): a crash in which no cleanup runs."""

    def __init__(self, epoch: int):
        self.epoch = int(epoch)

    def on_epoch_end(self, trainer, state, epoch, record) -> None:
        if epoch == self.epoch:
            os.kill(os.getpid(), SIGKILL)


class SignalAfterSteps(Callback):
    """Send this process `signal` (a name, SIGUSR1 by default) after the run's `steps`-th training
    step: a preemption notice in the middle of an epoch."""

    def __init__(self, steps: int, signal: str = "SIGUSR1"):
        self.steps, self.signum = int(steps), Signals[signal]

    def on_step_end(self, trainer, state, step, stats) -> None:
        if step == self.steps:
            os.kill(os.getpid(), self.signum)


class PoisonAfterSteps(Callback):
    """Set the model's first parameter to NaN once epoch `epoch`'s training steps are over: the
    losses were finite, the weights are not (as one bad last step leaves them)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_steps_end(self, trainer, state, epoch) -> None:
        if epoch == self.epoch:
            import torch

            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))


class SignalAt(Callback):
    """Send this process `signal` at a point outside the training steps: `init` (while the trainer
    is being set up: the callback is created before the benchmark is built) or a hook name, e.g.
    `on_fit_end` (after the last epoch, summary.json written)."""

    def __init__(self, hook: str, signal: str = "SIGTERM"):
        self.hook, self.signum = str(hook), Signals[signal]
        if self.hook == "init":
            os.kill(os.getpid(), self.signum)

    def on_fit_end(self, trainer, state, summary) -> None:
        if self.hook == "on_fit_end":
            os.kill(os.getpid(), self.signum)


class OutOfMemoryAfterSteps(Callback):
    """Raise torch's out-of-memory error after the run's `steps`-th step (as a too large batch does)."""

    def __init__(self, steps: int):
        self.steps = int(steps)

    def on_step_end(self, trainer, state, step, stats) -> None:
        import torch

        if step == self.steps:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")


class Recorder(Callback):
    """Appends one JSON line per hook call to `path`: {"hook": name, ...arguments that are numbers}."""

    def __init__(self, path: str):
        self.path = Path(path)

    def _write(self, hook: str, **fields: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"hook": hook, **fields}) + "\n")

    def on_fit_start(self, trainer, state) -> None:
        self._write("on_fit_start", epoch=state["epoch"], global_step=state["global_step"])

    def on_epoch_start(self, trainer, state, epoch, total, done) -> None:
        self._write("on_epoch_start", epoch=epoch, total=total, done=done)

    def on_step_end(self, trainer, state, step, stats) -> None:
        self._write("on_step_end", step=step)

    def on_steps_end(self, trainer, state, epoch) -> None:
        self._write("on_steps_end", epoch=epoch)

    def on_epoch_end(self, trainer, state, epoch, record) -> None:
        self._write("on_epoch_end", epoch=epoch, record_epoch=record["epoch"], history=len(state["history"]))

    def on_preempt(self, trainer, state) -> None:
        partial = state["partial"]
        self._write("on_preempt", epoch=state["epoch"], steps=partial["steps"] if partial else None)

    def on_fit_end(self, trainer, state, summary) -> None:
        self._write("on_fit_end", epochs=summary["epochs"], steps=summary["steps"])

    def on_close(self, trainer, state) -> None:
        self._write("on_close")


def callbacks(*entries: str) -> str:
    """The override attaching `entries` (each "module.Class,arg:value,...") as trainer.callbacks."""
    return "trainer.callbacks=[" + ",".join(f"{{_target_:{e}}}" for e in entries) + "]"


def kill_after_epoch(epoch: int) -> str:
    """The override that SIGKILLs the run after epoch `epoch` (see KillAfterEpoch)."""
    return callbacks(f"mtl.run.testing.KillAfterEpoch,epoch:{epoch}")


def signal_after_steps(steps: int, name: str = "SIGUSR1") -> str:
    """The override that signals the run after its `steps`-th step (see SignalAfterSteps)."""
    return callbacks(f"mtl.run.testing.SignalAfterSteps,steps:{steps},signal:{name}")


def recorder(path: str | Path) -> str:
    """The override that records every hook call to `path` (see Recorder)."""
    return callbacks(f"mtl.run.testing.Recorder,path:'{path}'")


def poison_after_steps(epoch: int) -> str:
    """Override: NaN weights after epoch `epoch`'s steps (finite losses)."""
    return callbacks(f"mtl.run.testing.PoisonAfterSteps,epoch:{epoch}")
