"""Name -> method class registry (`@register`), filled by importing every module of this package."""
from __future__ import annotations

_REGISTRY: dict[str, type] = {}
# what a method may declare in `needs` (see mtl.methods.base.StepContext)
NEEDS = ("features", "sample_losses", "val_batch", "passes")


def register(cls):
    """Class decorator: make `cls` creatable by its `name`."""
    name = cls.name
    unknown = set(getattr(cls, "needs", ())) - set(NEEDS)
    if unknown:
        raise ValueError(f"method {name!r} needs {sorted(unknown)}; a method can need only {list(NEEDS)}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"method name {name!r} registered twice ({_REGISTRY[name]} and {cls})")
    _REGISTRY[name] = cls
    return cls
