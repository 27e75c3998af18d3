"""Training progress that suits where the output goes.

When stderr is a terminal: a tqdm bar per epoch with the running per-task losses (redrawn in place).
Otherwise (a file, a pipe, SLURM logs): no carriage returns, only plain lines on stderr, one at the
end of every epoch and, for long epochs, one every `log_every` steps, each with the running mean
losses, the time per step and the estimated time left (training steps only; evaluation is not
counted).
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Sequence, TextIO

Losses = Callable[[], Sequence[float]]
REFRESH_S = 0.5  # tqdm's mininterval: the bar and its postfix redraw at most twice a second


def _duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Progress of one training epoch (`epoch` counts from 0, of `epochs`) of `total` steps.

    update(n, losses) after each step; `losses` is a callable returning the running mean loss per
    task, called only when something is shown (so a step costs no host sync when nothing is due).
    `interactive=None` decides by `stream.isatty()`; `enabled=False` shows nothing at all.
    """

    def __init__(self, total: int, epoch: int, epochs: int, *, task_names: Sequence[str] = (),
                 enabled: bool = True, log_every: int | None = None, stream: TextIO | None = None,
                 interactive: bool | None = None):
        self.total, self.epoch, self.epochs = int(total), int(epoch), int(epochs)
        self.task_names = list(task_names)
        self.enabled = bool(enabled)
        self.log_every = int(log_every) if log_every else 0
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.steps = 0
        self.start = time.perf_counter()
        self._last_losses: Losses | None = None
        self._bar = None
        self._postfix_t = float("-inf")
        if self.enabled and self.interactive:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False,
                             file=self.stream, dynamic_ncols=True, mininterval=REFRESH_S)

    def update(self, n: int = 1, losses: Losses | None = None) -> None:
        self.steps += n
        self._last_losses = losses
        if self._bar is not None:
            # recompute the postfix at most every REFRESH_S (tqdm redraws at most that often too)
            now = time.perf_counter()
            if losses is not None and now - self._postfix_t >= REFRESH_S:
                self._postfix_t = now
                self._bar.set_postfix_str(" ".join(f"{v:.3g}" for v in losses()), refresh=False)
            self._bar.update(n)
        elif self.enabled and self.log_every and self.steps % self.log_every == 0 and self.steps < self.total:
            self._line()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.steps:
            self._line()

    # ------------------------------------------------------------------------------------------
    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / self.steps
        left = (self.total - self.steps) + (self.epochs - self.epoch - 1) * self.total
        parts = [f"[mtl] epoch {self.epoch + 1}/{self.epochs} step {self.steps}/{self.total}"]
        if self._last_losses is not None:
            values = list(self._last_losses())
            names = self.task_names if len(self.task_names) == len(values) else [str(i) for i in range(len(values))]
            parts.append("loss " + " ".join(f"{k} {v:.3g}" for k, v in zip(names, values)))
        parts.append(f"{per_step * 1000:.1f} ms/step")
        parts.append(f"ETA {_duration(per_step * left)} (train steps)")
        print(" | ".join(parts), file=self.stream, flush=True)
