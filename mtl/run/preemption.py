"""Stop cleanly when the cluster is about to stop the job.

SLURM signals a job before it kills it: SIGTERM on preemption or `scancel`, and, when asked with
`--signal=USR1@120` (or submitit's `signal_delay_s`, which sends SIGUSR2), a user signal some seconds
before the time limit. The guard only records the signal; the trainer checks it between steps,
saves a checkpoint at that point and then hands the signal on to whoever handled it before
(submitit requeues the job there), so a requeued job resumes exactly where this one stopped.
"""
from __future__ import annotations

import signal
from typing import Any

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGUSR1", "SIGUSR2", "SIGTERM")) if s is not None)


class PreemptionGuard:
    """Context manager: records SIGUSR1/SIGUSR2/SIGTERM instead of dying on them."""

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
        """After the checkpoint: let the previous handler act (submitit requeues and exits there)."""
        previous = self._previous.get(self.received)
        self._restore()
        if callable(previous):
            previous(self.received, None)
