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
