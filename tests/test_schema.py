"""The config schema (mtl/config/schema.py): unknown keys fail at composition, declared ones compose
everywhere, the schema holds no values, and resuming treats a key it fills with null as absent."""
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf

from mtl.config import schema
from mtl.run.resume import changed_keys
from mtl.config.compose import compose

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override,named", [
    ("+trainer.epoch=3", "trainer.epoch: no such config key"),
    ("+run.forse=true", "run.forse: no such config key"),
    ("+benchmark.protocol.selction=best_val", "benchmark.protocol.selction: no such config key"),
    ("+benchmark.protocol.reference.sourse=x", "benchmark.protocol.reference.sourse: no such config key"),
    ("+sede=1", "sede: no such config key"),
])
def test_added_unknown_key_fails_at_composition(override, named):
    with pytest.raises(ConfigCompositionException, match=named):
        compose([override])


@pytest.mark.parametrize("override,key", [("trainer.epoch=3", "trainer.epoch"), ("run.forse=true", "run.forse"),
                                          ("benchmark.protocol.epoch=3", "benchmark.protocol.epoch")])
def test_overridden_unknown_key_fails_at_composition(override, key):
    with pytest.raises(ConfigCompositionException, match=key.replace(".", r"\.")):
        compose([override])


def test_open_blocks_take_new_keys():
    """build kwargs, optimizer kwargs and reference metrics belong to their targets, not the schema."""
    cfg = compose(["+benchmark.build.extra=1", "+benchmark.protocol.optimizer.amsgrad=true",
                   "+benchmark.protocol.reference.metrics.t3={mae:1.0}"])
    assert cfg.benchmark.build.extra == 1 and cfg.benchmark.protocol.optimizer.amsgrad is True


def test_booleans_are_typed():
    assert compose(["run.force=no"]).run.force is False
    with pytest.raises(ConfigCompositionException):
        compose(["run.force=maybe"])


def _defaults(node):
    hints = typing.get_type_hints(node)
    for f in dataclasses.fields(node):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _defaults(hints[f.name])
        elif f.default is not dataclasses.MISSING:
            yield f"{node.__name__}.{f.name}", f.default


def test_schema_declares_keys_not_values():
    """Values live in the YAML files: a schema field is required (MISSING) or optional (null)."""
    for name, default in _defaults(schema.TrainConfig):
        assert default in (MISSING, None), (name, default)


def test_multirun_checks_added_keys_too(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mtl.train", "-m", "logger=none", "+trainer.epoch=3",
                        f"run.root={tmp_path}", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-1500:]
    assert "error: InvalidValue: trainer.epoch: no such config key" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.glob("synthetic/*"))


def test_resume_treats_a_null_the_schema_adds_as_absent():
    current = OmegaConf.to_container(compose(["benchmark=synthetic"]), resolve=True)
    stored = OmegaConf.to_container(compose(["benchmark=synthetic"]), resolve=True)
    assert current["benchmark"]["protocol"]["monitor"] is None
    for key in ("monitor", "reference_m", "references", "delta"):
        del stored["benchmark"]["protocol"][key]
    del stored["sweep_points"]
    assert changed_keys(OmegaConf.to_yaml(stored), current) == []
    stored["benchmark"]["protocol"]["monitor"] = "val_delta_m"  # a value that was set is still compared
    assert [k for k, *_ in changed_keys(OmegaConf.to_yaml(stored), current)] == ["benchmark.protocol.monitor"]


def test_resume_ignores_named_alternative_references():
    current = OmegaConf.to_container(compose(["benchmark=nyuv2_segnet"]), resolve=True)
    stored = OmegaConf.to_container(compose(["benchmark=nyuv2_segnet"]), resolve=True)
    stored["benchmark"]["protocol"]["reference_igb"] = stored["benchmark"]["protocol"].pop("references")["igb"]
    assert changed_keys(OmegaConf.to_yaml(stored), current) == []
