"""Composing a run's config from `configs/` (shipped inside the package as `mtl/configs`), and
Hydra's composition errors as one line that names the key and the fix."""
from __future__ import annotations

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


def explain_composition_error(err: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors as one line: what, which key, how to fix."""
    import re

    text = str(err)
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        options = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
        return f"{group}={name}: no such {group} (configs/{group}/{name}.yaml); choose one of {', '.join(options)}"
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
            return (f"method.{leaf}: method {method or cfg.method.name} has no hyperparameter {leaf!r}; "
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
