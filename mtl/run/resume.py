"""What may change when a run directory is resumed.

A run directory belongs to the settings it was started with (its `config.yaml`). Re-running it with
other settings would silently continue the old training under a config file that records the new
ones, so the trainer compares the two before resuming and refuses any change that can alter the
results. Keys below cannot: where the run directory lives (results folders get moved), where logs go, how progress is shown, which launcher or device index
runs the job, how often checkpoints are written, which callbacks watch the loop. `trainer.epochs` may grow (train longer); it may
not shrink (the finished epochs would not be those of a shorter run).
"""
from __future__ import annotations

from typing import Any

import yaml

# prefixes of dotted keys whose change cannot alter a run's results
MAY_CHANGE = (
    "logger.", "run.root", "run.dir", "run.force", "run.wait_for_lock", "run.keep_checkpoint", "run.checkpoint",
    "trainer.progress", "trainer.log_every_steps", "trainer.checkpoint_every", "trainer.callbacks",
    "trainer.kill_after_epoch", "trainer.signal_after_steps",  # testing aids older run directories record
    "device", "threads", "runtime.",
)
MAY_GROW = ("trainer.epochs", "benchmark.protocol.epochs")
# named alternative STL references: no code reads them; one that is used is interpolated into
# `reference`/`reference_m`, which are stored resolved and compared (`reference_igb.`: their name in
# configs stored before `references` existed)
UNREAD = ("benchmark.protocol.references.", "benchmark.protocol.reference_igb.")
# keys added later, with the value that means what their absence meant in older run directories
ADDED = {"trainer.speed": "exact"}


# every key that cannot change a run's results: all other keys are "result-changing" (resume, the
# skip of a finished run, checkpoint identity, and tables/compare, which refuse to put runs whose
# result-changing settings differ into one row or ranking, all use this one list)
BOOKKEEPING = (*MAY_CHANGE, *UNREAD)


def is_bookkeeping(key: str) -> bool:
    """Whether dotted `key` is one whose value cannot change the results (see BOOKKEEPING)."""
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in BOOKKEEPING)


def result_settings(config: dict[str, Any], *, growable: bool = True) -> dict[str, Any]:
    """{dotted key: value} of the result-changing settings of a (nested) config; null values are
    left out (a null optional key means the same as no key). `growable=False` also leaves out the
    keys that may grow on a resume (epochs), as the checkpoint's config hash does."""
    return {k: v for k, v in flatten(config).items()
            if v is not None and not is_bookkeeping(k) and (growable or k not in MAY_GROW)
            and not (k in ADDED and v == ADDED[k])}  # a later key at the value its absence meant


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of the settings a checkpoint can be resumed under (result-changing, epochs aside)."""
    import hashlib
    import json

    text = json.dumps(result_settings(config, growable=False), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        if not d and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: d}


def _allowed(key: str, old: Any, new: Any, grow: bool = True) -> bool:
    if is_bookkeeping(key):
        return True
    if grow and key in MAY_GROW and isinstance(old, int) and isinstance(new, int):
        return new >= old
    return False


def changed_keys(stored_yaml: str, current: dict[str, Any], *, grow: bool = True) -> list[tuple[str, Any, Any]]:
    """[(key, stored value, new value)] for every difference that could change the results.
    `grow=False` (a finished run) also counts more epochs as a change: the stored result is then
    not the one asked for. A stored config that is not a YAML mapping raises ValueError (the
    trainer names the file)."""
    try:
        stored = yaml.safe_load(stored_yaml)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"not valid YAML{at}: {str(err).splitlines()[0][:120]}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"not a YAML mapping of settings (a {type(stored).__name__})")
    old, new = flatten(stored), flatten(current)
    missing = object()
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        # an optional key the schema (mtl/config/schema.py) fills with null means the same as no key
        if a is missing and key in ADDED and b == ADDED[key]:
            continue
        if a == b or (a is missing and b is None) or (a is None and b is missing) or _allowed(key, a, b, grow):
            continue
        out.append((key, "<absent>" if a is missing else a, "<absent>" if b is missing else b))
    return out


def describe(changes: list[tuple[str, Any, Any]], limit: int = 8) -> str:
    parts = [f"{k}: {a!r} -> {b!r}" for k, a, b in changes[:limit]]
    if len(changes) > limit:
        parts.append(f"... {len(changes) - limit} more")
    return "; ".join(parts)
