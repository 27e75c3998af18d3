"""The keys a composed config may have: dataclasses registered with Hydra's ConfigStore as
`train_schema`, the first entry of configs/train.yaml's defaults list. Every config file and
override is merged onto it, so a misspelled key (`trainer.epoch=3`, `+run.forse=true`, `selction:`
in a benchmark YAML's protocol) fails at composition, naming the key, instead of being ignored or
failing later in a constructor.

The schema says which keys exist, not their values: those stay in the YAML files (one source per
fact), so every field without a YAML value everywhere is MISSING. Booleans are typed (Hydra then
converts `run.force=no` to False); other values are checked, with messages that say the fix, by
mtl/run/validate.py before a run, and method hyperparameters by mtl/methods/_hparams.py. Open parts:
`method` and `logger` (per-option keys; launchers write only to `hydra.*`), `benchmark.build` (the kwargs of its
`_target_`), optimizer and scheduler (torch kwargs) and the reference metrics.
Optional protocol keys default to null, which the trainer reads as its default (see their comments).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class Reference:
    """An STL reference: where the numbers come from and {task: {metric: value}}."""

    source: str = MISSING
    metrics: Dict[str, Dict[str, Any]] = MISSING


@dataclass
class Protocol:
    """benchmark.protocol: how a benchmark is trained, which epoch is reported, the Δ references."""

    epochs: Any = MISSING
    optimizer: Dict[str, Any] = MISSING          # torch.optim class (_target_) and its kwargs
    scheduler: Optional[Dict[str, Any]] = MISSING  # torch.optim.lr_scheduler class and kwargs, or null
    method_params: Dict[str, Any] = MISSING      # lr / weight_decay of a method's own parameters (null: the network's)
    selection: Any = MISSING                     # best_val | best_test | last10 (mtl.scoring.selection.RULES)
    selection_baseline: Any = None               # epoch0 (null) | stl
    selection_ties: Any = None                   # earliest (null) | latest
    report: Any = None                           # selection rules recorded in summary.json (null: [selection])
    delta: Any = None                            # p (null) | m | a list: its first entry ranks epochs under selection_baseline=stl
    monitor: Any = None                          # what ReduceLROnPlateau steps on (null: val_improvement)
    reference: Reference = MISSING               # Δp reference (and Δm's without reference_m)
    reference_m: Optional[Reference] = None      # Δm reference (null: `reference`)
    # named alternative references, read by nothing but interpolations, e.g.
    # benchmark.protocol.reference_m='${benchmark.protocol.references.igb}'
    references: Optional[Dict[str, Reference]] = None


@dataclass
class Benchmark:
    """The `benchmark` block (configs/benchmark/<name>.yaml)."""

    name: str = MISSING
    needs_gpu: bool = MISSING
    build: Dict[str, Any] = MISSING              # _target_ (mtl.benchmarks.<module>.build) and its kwargs
    prepare: Optional[Dict[str, Any]] = None     # shared data cache built before a campaign (_target_ + kwargs)
    protocol: Protocol = MISSING


@dataclass
class Run:
    root: Any = MISSING
    tag: Any = MISSING
    dir: Any = MISSING
    force: bool = MISSING
    checkpoint: bool = MISSING
    keep_checkpoint: bool = MISSING
    wait_for_lock: bool = MISSING


@dataclass
class Trainer:
    epochs: Any = MISSING
    max_steps_per_epoch: Any = MISSING
    progress: bool = MISSING
    log_every_steps: Any = MISSING
    checkpoint_every: Any = MISSING
    deterministic: bool = MISSING
    speed: Any = MISSING                          # exact | fast (mtl/run/device.py speed_settings)
    callbacks: Any = MISSING                     # list of {_target_: ..., ...} (mtl/run/callbacks.py)
    precision: Any = MISSING
    channels_last: bool = MISSING


@dataclass
class TrainConfig:
    """configs/train.yaml and what its groups and experiments add."""

    benchmark: Benchmark = MISSING
    method: Dict[str, Any] = MISSING             # name + hyperparameters (checked by mtl/methods/_hparams.py)
    logger: Dict[str, Any] = MISSING
    seed: Any = MISSING
    device: Any = MISSING
    grad_engine: Any = MISSING
    threads: Any = MISSING
    run: Run = field(default_factory=Run)
    trainer: Trainer = field(default_factory=Trainer)
    # experiment files: reproduce.stl (scripts/reproduce.py), a named grid of sweep points
    # (configs/experiment/sweep_*.yaml, scripts/sweep.py)
    reproduce: Optional[Dict[str, Any]] = None
    sweep_point: Optional[str] = None
    sweep_points: Optional[Dict[str, Any]] = None


def register() -> None:
    """Store the schema as `train_schema` (idempotent)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


register()


def _hint(path: str, key: str, declared: list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(key, declared, n=3)
    return f"; did you mean {', '.join(path + n for n in near)}?" if near else ""


def explain_unknown_key(text: str) -> str | None:
    """One line for Hydra's report of a config file key the schema does not declare, else None."""
    import dataclasses
    import re

    found = re.search(r"In '([^']+)': ConfigKeyError.*?full_key: (\S+)", text, re.S)
    if not found:
        return None
    name, key = found.groups()
    head, _, leaf = key.rpartition(".")
    kind = re.search(r"object_type=(\w+)", text)
    node = globals().get(kind.group(1)) if kind else None
    declared = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
    return (f"configs/{name}.yaml: {key}: no such config key (the keys are declared in "
            f"mtl/config/schema.py{_hint(head + '.' if head else '', leaf, declared)})")


def check(cfg) -> None:
    """Raise ConfigCompositionException for a key in a schema node that the schema does not declare.
    Composition already refuses such keys from config files and plain overrides; this catches the
    ones `+key=value` overrides add, which Hydra lets into any node."""
    import dataclasses

    from hydra.errors import ConfigCompositionException
    from omegaconf import DictConfig, OmegaConf

    def walk(node: DictConfig, path: str) -> None:
        kind = OmegaConf.get_type(node)
        declared = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else None
        for key in node.keys():
            full = f"{path}{key}"
            if declared is not None and key not in declared:
                raise ConfigCompositionException(f"{full}: no such config key (the keys are declared in "
                                                 f"mtl/config/schema.py{_hint(path, str(key), declared)})")
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                walk(child, f"{full}.")

    walk(cfg, "")
