"""Stop cleanly when the cluster (or the user) is about to stop the job.

SLURM signals a job before it kills it: SIGTERM on preemption or `scancel`, and, when asked with
`--signal=USR1@120` (or submitit's `signal_delay_s`, which sends SIGUSR2), a user signal some seconds
before the time limit; Ctrl-C sends SIGINT. During training the guard only records the signal; the
trainer checks it between steps, saves a checkpoint at that point and then hands the signal on to
whoever handled it before (submitit requeues the job there), so a requeued job resumes exactly where
this one stopped.

Outside training (imports, setup, building a data cache, after the last epoch) there is no step to
finish: `stop_on_signals()` makes the same signals raise `Interrupted` there, which the command line
turns into one line and exit status 3 (EXIT_PREEMPTED), like a stop during training. Atomic writes
(temp file + rename) keep every file whole, so `[ $rc -eq 3 ] && requeue` is always safe.
"""
from __future__ import annotations

import signal
from typing import Any

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGUSR1", "SIGUSR2", "SIGTERM"))
                if s is not None)


class Interrupted(BaseException):
    """A stop signal arrived outside the training steps (setup, data cache, after the last epoch).

    A BaseException, like KeyboardInterrupt: no `except Exception` on the way (Hydra's job runner,
    a data loader) swallows it, and every `finally` (the run directory's lock) still runs."""

    def __init__(self, signum: int, during: str = "setup"):
        self.signum, self.during = signum, during
        super().__init__(f"{signal.Signals(signum).name} during {during}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class _Phase:
    during = "setup"  # what the process is doing, for the message of a stop outside training


def set_phase(during: str) -> None:
    """Name what the process does now ("setup", "building the data cache", "the end of the run")."""
    _Phase.during = during


def _raise_interrupted(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Interrupted(signum, _Phase.during)


_raise_interrupted.mtl_stop = True  # hand_on() never calls this one (it would abort the checkpoint)


def stop_message(name: str, during: str) -> str:
    """The one line of a stop outside the training steps (exit status 3)."""
    return (f"[mtl] {name} during {during}: stopped (every file written so far is whole); run the same "
            f"command again, or requeue the job, to go on (exit status 3)")


def _exit_now(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    import os
    import sys

    sys.stderr.write(stop_message(signal.Signals(signum).name, "setup (starting up)") + "\n")
    sys.stderr.flush()
    os._exit(3)  # nothing is open or half-written while modules are imported


def stop_on_signals(signals: tuple[int, ...] = SIGNALS, *, immediately: bool = False) -> None:
    """Make the stop signals raise Interrupted (from the main thread; elsewhere a no-op). With
    `immediately` (while a command line is still importing its modules) they print the line and
    exit with status 3 at once."""
    try:
        for s in signals:
            signal.signal(s, _exit_now if immediately else _raise_interrupted)
    except ValueError:  # not the main thread
        pass


class PreemptionGuard:
    """Context manager: records SIGINT/SIGUSR1/SIGUSR2/SIGTERM instead of dying on them."""

    def __init__(self, signals: tuple[int, ...] = SIGNALS):
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.received is None:
            self.received = signum
            print(f"[mtl] received {signal.Signals(signum).name}: saving a checkpoint after this step", flush=True)

    def __enter__(self) -> "PreemptionGuard":
        try:
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread (e.g. a notebook's worker thread): leave signals alone
            self._restore()
        return self

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self._restore()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def hand_on(self) -> None:
        """After the checkpoint: let the previous handler act (submitit requeues and exits there).
        Python's own SIGINT handler (KeyboardInterrupt) and our Interrupted are not called: the
        trainer raises Preempted itself."""
        previous = self._previous.get(self.received)
        self._restore()
        if callable(previous) and previous is not signal.default_int_handler \
                and not getattr(previous, "mtl_stop", False):
            previous(self.received, None)
