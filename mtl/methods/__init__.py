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

from mtl.methods.base import Aggregate, GradientMethod, LossWeighting, Method, Representation
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
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(available())}") from None


def create(name: str, num_tasks: int, **hparams) -> Method:
    """Instantiate the method `name` for `num_tasks` tasks with its hyperparameters."""
    return get_class(name)(num_tasks=num_tasks, **hparams)


__all__ = ["available", "create", "get_class", "register", "Method", "LossWeighting",
           "GradientMethod", "Aggregate", "Representation"]
