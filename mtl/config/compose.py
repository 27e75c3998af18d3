"""Composing a run's config from `configs/` (shipped inside the package as `mtl/configs`), and
Hydra's composition errors as one line that names the key and the fix."""
from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from mtl.config import schema  # registers `train_schema`, the first entry of configs/train.yaml's defaults
from mtl.paths import CONFIG_DIR as _CONFIG_PATH

CONFIG_DIR = str(_CONFIG_PATH)


def compose(overrides: list[str]) -> DictConfig:
    """The fully composed config for `overrides` (no Hydra job is started)."""
    from hydra import compose as _compose, initialize_config_dir

    for o in overrides:  # `optional experiment` in train.yaml: Hydra would silently ignore a missing one
        key, eq, value = o.lstrip("+~").partition("=")
        if eq and key == "experiment":
            check_experiment(value)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = _compose(config_name="train", overrides=list(overrides))
    schema.check(cfg)
    return cfg


def check_experiment(name: str | None) -> None:
    """Raise Hydra's MissingConfigException (explained as one line by explain_composition_error)
    unless `name` is an experiment of configs/experiment/ (or null: none)."""
    if name in (None, "", "null", "None"):
        return
    if not (Path(CONFIG_DIR) / "experiment" / f"{name}.yaml").is_file():
        from hydra.errors import MissingConfigException

        raise MissingConfigException(f"Could not find 'experiment/{name}'", missing_cfg_file=f"experiment/{name}")


def composition_error_type(err: Exception) -> str:
    """The error type the command line names for a composition error (never Hydra's class names):
    UnknownName for a group option that does not exist, InvalidValue for every other key or value."""
    from hydra.errors import MissingConfigException

    return "UnknownName" if isinstance(err, MissingConfigException) else "InvalidValue"


def explain_composition_error(err: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors as one line: what, which key, how to fix."""
    line = _explain(err, overrides)
    unknown = re.match(r"([\w.]+): no such config key", line)
    if unknown and "did you mean" not in line:  # e.g. `lr=0.01`: the key exists deeper in the config
        key = unknown.group(1)
        near = _keys_ending_in(key.rpartition(".")[2], [o for o in overrides if not o.lstrip("+~").startswith(key)])
        if near:
            line = line.replace(f"{key}: no such config key",
                                f"{key}: no such config key; did you mean {' or '.join(near)}?", 1).replace("?; (", "? (", 1)
    return line


def _keys_ending_in(leaf: str, overrides: list[str]) -> list[str]:
    """Full keys of the composed config whose last part is `leaf` (at most 3, shortest first)."""
    from omegaconf import DictConfig

    try:
        root = compose(overrides)
    except Exception:  # noqa: BLE001 - only a hint: another error in the overrides leaves it out
        return []
    found: list[str] = []

    def walk(node: DictConfig, path: str) -> None:
        for key in node.keys():
            child = node._get_node(key)
            full = f"{path}{key}"
            if str(key) == leaf and path:
                found.append(full)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                walk(child, f"{full}.")

    walk(root, "")
    return sorted(found, key=len)[:3]


def _explain(err: Exception, overrides: list[str]) -> str:
    text = str(err)
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        import difflib

        group, name = missing.groups()
        options = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
        near = difflib.get_close_matches(name, options, n=3)
        hint = f"did you mean {' or '.join(f'{group}={n}' for n in near)}? " if near else ""
        return (f"{group}={name}: no such {group} (configs/{group}/{name}.yaml); {hint}"
                f"choose one of {', '.join(options)}")
    from mtl.config.schema import explain_unknown_key

    if explain_unknown_key(text):  # a key of a config file that mtl/config/schema.py does not declare
        return explain_unknown_key(text)
    absent = re.search(r"Could not override '([^']+)'", text)
    if absent:
        key = absent.group(1)
        head, _, leaf = key.rpartition(".")
        if head == "method":
            method = next((o.split("=", 1)[1] for o in overrides if o.startswith("method=")), None)
            cfg = compose([o for o in overrides if not o.lstrip("+").startswith("method.")])
            keys = sorted(k for k in cfg.method if k != "name")
            import difflib

            near = difflib.get_close_matches(leaf, keys, n=1)
            hint = f" (did you mean method.{near[0]}?)" if near else ""
            return (f"method.{leaf}: method {method or cfg.method.name} has no hyperparameter {leaf!r}{hint}; "
                    f"it takes {', '.join(keys)} (configs/method/{cfg.method.name}.yaml)")
        import dataclasses
        import difflib

        from omegaconf import OmegaConf

        root = compose([o for o in overrides if not o.lstrip("+").startswith(key)])
        parent = OmegaConf.select(root, head) if head else root
        near = difflib.get_close_matches(leaf, list(parent) if hasattr(parent, "keys") else [], n=3)
        hint = f"did you mean {', '.join(f'{head}.{n}' if head else n for n in near)}? " if near else ""
        fixed = hasattr(parent, "keys") and dataclasses.is_dataclass(OmegaConf.get_type(parent))
        return f"{key}: no such config key; {hint}" + \
            ("(the keys are declared in mtl/config/schema.py)" if fixed else f"(`+{key}=...` adds a new key)")
    if err.__cause__ is not None and str(err.__cause__) not in text:  # e.g. why an override's value did not merge
        text += f": {err.__cause__}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
