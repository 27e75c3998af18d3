"""Errors that stop a run with one clear message (no silent fallbacks), and the exit statuses the
command line gives them."""

EXIT_USER_ERROR = 2  # a bad value, missing data, a locked or changed run dir: the message says the fix
EXIT_PREEMPTED = 3   # stopped by a preemption signal after saving a checkpoint: run again to resume


class MTLError(Exception):
    """Base class of the suite's own errors.

    A DataLoader worker re-raises an error in the main process as `type(err)(text)`, where the text
    is "Caught <Name> in DataLoader worker process k." plus the worker's whole traceback; our errors
    keep only their own one-line message from it (the traceback is noise for a damaged file)."""

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            args = (_unwrap_worker_message(args[0], type(self).__name__),)
        super().__init__(*args)


def brief(err: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message` (at most `limit` characters): a library's multi-line error
    quoted inside our one-line messages."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _unwrap_worker_message(text: str, name: str) -> str:
    """The original message out of torch's DataLoader-worker re-raise text (unchanged otherwise)."""
    if not (text.startswith(f"Caught {name} in DataLoader worker") and "\nOriginal Traceback" in text):
        return text
    lines = [ln for ln in text.rstrip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):  # the traceback ends with "<module>.<Name>: <message>"
        head, sep, rest = lines[i].partition(": ")
        if sep and head.split(".")[-1] == name:
            return " ".join([rest, *lines[i + 1:]]).strip()
    return text


class InvalidCombination(MTLError):
    """A configuration the reference code forbids or silently breaks (e.g. rep-grad with PCGrad)."""


class SolverError(MTLError):
    """A numerical solver (cvxpy, scipy, QP) failed; the step cannot be trusted."""


class NonFiniteLoss(MTLError):
    """A task loss became NaN or infinite."""


class NonFiniteState(MTLError):
    """Parameters or evaluation metrics became NaN or infinite (with finite losses); the checkpoint
    that would hold them is not written."""


class DatasetNotFound(MTLError):
    """A benchmark's data is missing on disk."""


class InvalidValue(MTLError, ValueError):
    """A value the user gave (config key, keyword argument, file content) is wrong.

    The message is one line, `<where>: <what>; <how to fix>`, e.g.
    `method.beta: db_mtl needs a number in [0, 1), got 1.5; e.g. method.beta=0.9 (the default)`.
    Also a ValueError, so callers that catch ValueError keep working. A single argument is taken as
    the whole message (that is how a DataLoader worker re-raises it in the main process).
    """

    def __init__(self, where: str, what: str | None = None, fix: str | None = None):
        super().__init__(where if what is None and fix is None else f"{where}: {what}; {fix}")
        self.where, self.what, self.fix = where, what, fix

    def __str__(self):  # the plain message, also for subclasses that are KeyErrors (no quoting)
        return str(self.args[0])

    def __reduce__(self):  # picklable across launcher processes despite the 3-argument constructor
        return type(self), (self.where, self.what, self.fix)


class UnknownName(InvalidValue, KeyError):
    """A name (method, benchmark, ...) that is not registered; the message lists the valid ones."""


class InvalidLoss(InvalidValue):
    """Task losses a method cannot use: not a tensor of one loss per task, or negative under a log."""


class MissingEpochStatistics(MTLError, RuntimeError):
    """An epoch-level method (DWA, IGB, GradNorm, STCH) lacks an epoch's mean training losses: the
    epoch had no training step, or a custom loop skipped `on_epoch_start`/`on_epoch_end`."""


class DatasetDamaged(MTLError):
    """A data or cache file exists but cannot be read (truncated, random bytes); the message names
    the file and how to restore it (re-download, re-extract, delete a cache)."""


class ConfigChanged(MTLError):
    """A run directory is being resumed with settings that differ from the ones it started with."""


class MixedSettings(MTLError):
    """Runs that a table row or a ranking would put together were trained with different
    result-changing settings (mtl.run.resume.BOOKKEEPING lists the keys that do not count)."""


class RunLocked(MTLError):
    """Another process is training in the same run directory."""


class NoGPU(MTLError):
    """A GPU protocol found no GPU and was not told to run on the CPU."""


class DamagedFile(MTLError):
    """A file the run needs (checkpoint, summary, metrics, cache) cannot be read."""


class Preempted(MTLError):
    """The run received a preemption signal; a checkpoint was saved and the run stopped."""


class StorageError(MTLError):
    """A result file cannot be written (read-only folder, full disk, quota)."""


class LoggerError(MTLError):
    """The experiment tracker cannot be reached or is not configured."""


class OutOfMemory(MTLError):
    """An allocation failed (host RAM or GPU memory) while reading an intact file or training; the
    message names smaller settings."""
