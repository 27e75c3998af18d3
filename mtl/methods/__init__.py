"""Balancing methods: `available()`, `create(name, num_tasks=T, **hparams)`.

Example (a user's own training loop)::

    >>> import torch
    >>> from mtl import methods
    >>> shared = torch.nn.Linear(4, 4); heads = torch.nn.ModuleList(torch.nn.Linear(4, 1) for _ in range(2))
    >>> m = methods.create("ew", num_tasks=2)
    >>> x = torch.randn(8, 4); h = shared(x)
    >>> losses = torch.stack([head(h).pow(2).mean() for head in heads])
    >>> info = m.backward(losses, list(shared.parameters()), list(heads.parameters()))
    >>> shared.weight.grad.shape
    torch.Size([4, 4])
"""
from __future__ import annotations

import importlib
import pkgutil

from mtl.errors import UnknownName
from mtl.methods._hparams import check_hparams
from mtl.engine import Representation
from mtl.methods.base import Aggregate, GradientMethod, LossWeighting, Method, StepContext
from mtl.methods.registry import _REGISTRY, register

_SKIP = {"base", "registry"}
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in _SKIP and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def available() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def get_class(name: str) -> type[Method]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):  # TypeError: an unhashable "name" (a list from the command line)
        raise UnknownName("method", f"unknown method {name!r}", f"choose one of {', '.join(available())}") from None


def check(name: str, num_tasks: int | None, **hparams) -> type[Method]:
    """Validate `create(name, num_tasks, **hparams)` without building anything: raises `InvalidValue`
    (unknown key, wrong type, out of range, unknown choice, too few tasks) naming the key, the value
    and what the method accepts. `num_tasks=None` (not known yet, e.g. before the benchmark is
    built) skips the checks that depend on it. Returns the method class."""
    cls = get_class(name)
    check_hparams(cls, num_tasks, hparams)
    return cls


def create(name: str, num_tasks: int, **hparams) -> Method:
    """Instantiate the method `name` for `num_tasks` tasks with its hyperparameters (validated first
    against the method's declared `hparams`)."""
    return check(name, num_tasks, **hparams)(num_tasks=num_tasks, **hparams)


__all__ = ["available", "check", "create", "get_class", "register", "Method", "LossWeighting",
           "GradientMethod", "Aggregate", "Representation", "StepContext"]
