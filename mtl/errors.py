"""Errors that stop a run with one clear message (no silent fallbacks)."""


class MTLError(Exception):
    """Base class of the suite's own errors."""


class InvalidCombination(MTLError):
    """A configuration the reference code forbids or silently breaks (e.g. rep-grad with PCGrad)."""


class SolverError(MTLError):
    """A numerical solver (cvxpy, scipy, QP) failed; the step cannot be trusted."""


class NonFiniteLoss(MTLError):
    """A task loss became NaN or infinite."""


class DatasetNotFound(MTLError):
    """A benchmark's data is missing on disk."""


class InvalidValue(MTLError):
    """A configuration value or API argument is invalid; the message names the key and the fix."""


class ConfigChanged(MTLError):
    """A run directory is being resumed with settings that differ from the ones it started with."""


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
