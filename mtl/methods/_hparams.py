"""Hyperparameter specs: each method class declares what its keyword arguments accept
(`hparams = {"beta": Real(ge=0, lt=1), ...}`) next to its constructor, and `check_hparams`
validates a call against them before the method is built.

Why: a typo (`method.betta`) or a bad value (`method.beta=abc`, `method.alpha=foo`) otherwise
surfaces as a TypeError deep in a constructor, or not at all (an out-of-range EMA coefficient
silently diverges). The accepted keys come from the constructor signatures (following `**kwargs`
up the class hierarchy), so a spec cannot drift from what the constructor takes unnoticed:
`tests/test_method_hparams.py` checks that every accepted key has a spec and vice versa.
"""
from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtl.errors import InvalidCombination, InvalidValue, UnknownName

_MISSING = object()
_INTERNAL = {"engine"}  # set by the trainer from `grad_engine`, not a method.* key a user writes


class Spec:
    """What one hyperparameter accepts. `problem` returns None when `value` is fine; `hint`, when
    set, replaces the generic "e.g. <default>" advice."""

    hint: str | None = None

    def describe(self, num_tasks: int) -> str:
        raise NotImplementedError

    def ok(self, value: Any, num_tasks: int) -> bool:
        raise NotImplementedError

    def problem(self, value: Any, num_tasks: int) -> str | None:
        return None if self.ok(value, num_tasks) else f"needs {self.describe(num_tasks)}, got {value!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Real(Spec):
    """A finite number within optional bounds (ge/gt/le/lt)."""

    def __init__(self, *, ge=None, gt=None, le=None, lt=None):
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def _range(self) -> str:
        lo = f"[{self.ge}" if self.ge is not None else (f"({self.gt}" if self.gt is not None else None)
        hi = f"{self.le}]" if self.le is not None else (f"{self.lt})" if self.lt is not None else None)
        if lo and hi:
            return f" in {lo}, {hi}"
        if lo:
            return f" >= {self.ge}" if self.ge is not None else f" > {self.gt}"
        if hi:
            return f" <= {self.le}" if self.le is not None else f" < {self.lt}"
        return ""

    def describe(self, num_tasks):
        return "a number" + self._range()

    def ok(self, value, num_tasks):
        if not _is_number(value) or not math.isfinite(value):
            return False
        return not ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))


class Int(Real):
    """An integer (not a bool, not 2.0) within optional bounds."""

    def describe(self, num_tasks):
        return "an integer" + self._range()

    def ok(self, value, num_tasks):
        return isinstance(value, int) and not isinstance(value, bool) and super().ok(value, num_tasks)


class TaskIndex(Spec):
    """The index of one of the benchmark's tasks, 0 .. num_tasks - 1."""

    def describe(self, num_tasks):
        return "a task index >= 0" if num_tasks is None else f"a task index from 0 to {num_tasks - 1} ({num_tasks} tasks)"

    def ok(self, value, num_tasks):  # num_tasks None: not known yet, only the lower bound is checked
        return (isinstance(value, int) and not isinstance(value, bool) and 0 <= value
                and (num_tasks is None or value < num_tasks))


class Bool(Spec):
    def describe(self, num_tasks):
        return "true or false"

    def ok(self, value, num_tasks):
        return isinstance(value, bool)


class Str(Spec):
    def describe(self, num_tasks):
        return "a name (string)"

    def ok(self, value, num_tasks):
        return isinstance(value, str)


class Choice(Spec):
    def __init__(self, *options, hint: str | None = None):
        self.options, self.hint = options, hint

    def describe(self, num_tasks):
        return "one of " + ", ".join(str(o) for o in self.options)

    def ok(self, value, num_tasks):
        # 1 == True in Python: a bool never counts as the integer choice 1 (or 0)
        return any(value == o and isinstance(value, bool) == isinstance(o, bool) for o in self.options)


class Null(Spec):
    def describe(self, num_tasks):
        return "null"

    def ok(self, value, num_tasks):
        return value is None


class Instance(Spec):
    """An object of a given class (e.g. a shared GradientEngine passed from Python)."""

    def __init__(self, cls: type):
        self.cls = cls

    def describe(self, num_tasks):
        return f"a {self.cls.__name__}"

    def ok(self, value, num_tasks):
        return isinstance(value, self.cls)


class Either(Spec):
    def __init__(self, *specs: Spec):
        self.specs = specs

    def describe(self, num_tasks):
        return " or ".join(s.describe(num_tasks) for s in self.specs)

    def ok(self, value, num_tasks):
        return any(s.ok(value, num_tasks) for s in self.specs)


class ListOf(Spec):
    """A list of items; `length` is a number, "num_tasks" (one per task) or None (any, >= 1)."""

    def __init__(self, item: Spec, length: int | str | None = None):
        self.item, self.length = item, length

    def _n(self, num_tasks):
        return num_tasks if self.length == "num_tasks" else self.length

    def describe(self, num_tasks):
        n = self._n(num_tasks)
        count = f"{n} entries" if n is not None else "one or more entries"
        return f"a list of {count}, each {self.item.describe(num_tasks)}"

    def ok(self, value, num_tasks):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            return False
        n = self._n(num_tasks)  # None for a per-task list while num_tasks is unknown: any length
        if (n is not None and len(value) != n) or len(value) == 0:
            return False
        return all(self.item.ok(v, num_tasks) for v in value)


class MethodPart(Spec):
    """A nested method given as a name or a mapping with `name` and its own hyperparameters
    (`combo`'s parts). Checked recursively by `check_hparams`."""

    def __init__(self, *, loss_weighting: bool = False, set_by_parent: tuple[str, ...] = ("engine",)):
        self.loss_weighting = loss_weighting
        self.set_by_parent = set_by_parent  # keys the combination passes to the part itself

    def describe(self, num_tasks):
        kind = "loss-weighting method" if self.loss_weighting else "method"
        return f"a {kind} name, or a mapping with `name` and its hyperparameters"

    def ok(self, value, num_tasks):  # the structure only; names and values are checked in check_hparams
        return isinstance(value, str) or (isinstance(value, Mapping) and "name" in value)


# ---- constructor introspection ------------------------------------------------------------------
def _init_chain(cls: type):
    """The __init__ signatures a call `cls(num_tasks, **kw)` goes through, following **kwargs up the MRO."""
    for klass in cls.__mro__:  # the method classes (they declare `hparams`) that define __init__
        if not (isinstance(klass, type) and hasattr(klass, "hparams")) or "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        yield klass, params
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return


def accepted_keys(cls: type) -> set[str]:
    """Keyword arguments `cls(num_tasks, **kw)` accepts (num_tasks excluded)."""
    keys: set[str] = set()
    for _, params in _init_chain(cls):
        keys |= {p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    keys.discard("num_tasks")
    return keys


def default(cls: type, key: str) -> Any:
    """The default the constructor chain gives `key` (the most derived class that names it wins)."""
    for _, params in _init_chain(cls):
        for p in params:
            if p.name == key:
                return _MISSING if p.default is inspect.Parameter.empty else p.default
    return _MISSING


def specs(cls: type) -> dict[str, Spec]:
    """The merged `hparams` declarations of `cls` and its bases (derived classes override)."""
    out: dict[str, Spec] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("hparams", {}) or {})
    return out


# ---- the check ----------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return str(value)


def check_num_tasks(cls: type, num_tasks: Any) -> None:
    if num_tasks is None:  # a check before the benchmark is built: per-task checks wait for create()
        return
    name = cls.name
    least = getattr(cls, "min_tasks", 1)
    if not isinstance(num_tasks, int) or isinstance(num_tasks, bool):
        raise InvalidValue("num_tasks", f"{name} needs the number of tasks as an integer, got {num_tasks!r}",
                           f"pass num_tasks={least if least > 1 else 3} (one per task loss)")
    if num_tasks < least:
        why = getattr(cls, "min_tasks_reason", "")
        raise InvalidValue("num_tasks", f"{name} needs at least {least} task{'s' if least > 1 else ''}, "
                           f"got num_tasks={num_tasks}{' (' + why + ')' if why else ''}",
                           "use it on a benchmark with more tasks, or use method=ew / method=stl for one task"
                           if least > 1 else "pass num_tasks >= 1")


def check_hparams(cls: type, num_tasks: int | None, hparams: Mapping[str, Any], prefix: str = "method.") -> None:
    """Raise `InvalidValue` naming the method, the key, the value and what it accepts, for the first
    unknown key or bad value of `cls(num_tasks, **hparams)`. `prefix` is how the user spells the
    key (`method.` on the command line, `method.loss.` inside `combo`). `num_tasks=None` checks
    everything that does not depend on the number of tasks (before the benchmark is built)."""
    from mtl.methods.registry import _REGISTRY

    check_num_tasks(cls, num_tasks)
    name = cls.name
    keys = accepted_keys(cls)
    declared = specs(cls)
    for key, value in hparams.items():
        where = f"{prefix}{key}"
        if key not in keys:
            close = difflib.get_close_matches(str(key), sorted(keys), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            shown = sorted(keys - _INTERNAL)
            raise InvalidValue(where, f"{name} has no hyperparameter {key!r}{hint}",
                               f"{name} takes {', '.join(prefix + k for k in shown) or 'no hyperparameters'}")
        spec = declared.get(key)
        if spec is None:
            continue  # a user's own method without `hparams`: its keys are still checked by name
        problem = spec.problem(value, num_tasks)
        if problem is not None:
            d = default(cls, key)
            if spec.hint:
                fix = spec.hint
            elif d is not _MISSING and not isinstance(d, Mapping) and spec.ok(d, num_tasks):
                fix = f"e.g. {where}={_fmt(d)} (the default)"
            else:
                fix = f"set {where} to {spec.describe(num_tasks)}"
            raise InvalidValue(where, f"{name} {problem}", fix)
        if isinstance(spec, MethodPart):
            part = value if isinstance(value, Mapping) else {"name": value}
            part_kw = {k: v for k, v in part.items() if k != "name"}
            part_name = part["name"]
            candidates = sorted(n for n, c in _REGISTRY.items() if n != name and not getattr(c, "needs", ()) and (
                not spec.loss_weighting or _is_loss_weighting(c)))  # a part gets no step context
            if not isinstance(part_name, str) or part_name not in _REGISTRY or part_name == name:
                kind = "loss-weighting method" if spec.loss_weighting else "method"
                raise UnknownName(f"{where}.name", f"{name} has no {kind} {part_name!r}",
                                  f"choose one of {', '.join(candidates)}")
            if getattr(_REGISTRY[part_name], "needs", ()):
                raise InvalidCombination(f"{name}: {where}.name={part_name} needs a step context "
                                         f"({', '.join(sorted(_REGISTRY[part_name].needs))}), which a combination's "
                                         f"parts do not get; choose one of {', '.join(candidates)}")
            if part_name not in candidates:
                raise InvalidCombination(f"{name}: {where}.name={part_name} is not a loss-weighting method; "
                                         f"choose one of {', '.join(candidates)}")
            for own in spec.set_by_parent:
                if own in part_kw:
                    raise InvalidValue(f"{where}.{own}", f"{name} sets {own} for its parts",
                                       f"set method.{own} on the combination instead" if own != "engine"
                                       else "set grad_engine instead")
            check_hparams(_REGISTRY[part_name], num_tasks, part_kw, prefix=f"{where}.")


def _is_loss_weighting(cls: type) -> bool:
    return getattr(cls, "weights_losses", False)
