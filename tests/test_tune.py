"""make tune: every search space in configs/tune/ names declared hyperparameters within their specs;
a tiny study on synthetic writes its summary and trials, trains the best on seeds, and a relaunch
replays the same trials from finished run dirs; a benchmark without a val split is refused."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mtl import methods
from mtl.campaigns import tune
from mtl.errors import InvalidCombination
from mtl.methods._hparams import specs

SPACES = sorted(p.stem for p in tune.TUNE_DIR.glob("*.yaml"))


def _values(expr: str) -> list:
    inner = re.sub(r"^tag\(log,\s*(.*)\)$", r"\1", expr.strip())
    m = re.match(r"^(interval|choice)\((.*)\)$", inner)
    assert m, f"unsupported sweep expression {expr!r}"
    return [yaml.safe_load(v) for v in m.group(2).split(",")]


@pytest.mark.parametrize("name", SPACES)
def test_search_space_keys_are_declared_hparams_within_their_specs(name):
    assert name in methods.available(), f"configs/tune/{name}.yaml: no method {name!r}"
    declared = specs(methods.get_class(name))
    space = tune.search_space(name)
    assert space
    for key, expr in space.items():
        assert key.startswith("method."), key
        spec = declared.get(key.removeprefix("method."))
        assert spec is not None, f"{name}: {key} is not a declared hyperparameter ({sorted(declared)})"
        for v in _values(str(expr)):
            assert spec.ok(float(v) if isinstance(v, int) else v, 3), f"{name}: {key}={v} outside {spec.describe(3)}"


def test_every_method_shares_the_learning_rate_range():
    exp = yaml.safe_load((tune.TUNE_DIR.parent / "experiment" / "tune.yaml").read_text())
    assert exp["hydra"]["sweeper"]["params"] == {tune.LR_KEY: "tag(log, interval(1e-4, 1e-2))"}
    assert exp["hydra"]["sweeper"]["direction"] == "maximize" and exp["hydra"]["sweeper"]["sampler"]["seed"] == 0


def test_benchmark_without_val_split_is_refused(tmp_path):
    with pytest.raises(InvalidCombination, match="choose on test"):
        tune.tune("ew", "cityscapes", 2, seeds=[0], out=tmp_path)


def test_tiny_study_on_synthetic_and_relaunch(tmp_path, capfd):
    argv = ["--method", "db_mtl", "--bench", "synthetic", "--trials", "2", "--seeds", "0", "--out",
            str(tmp_path / "tune"), f"run.root={tmp_path / 'store'}", "logger=none", "trainer.epochs=1",
            "trainer.progress=false", "benchmark.build.n_train=128"]
    assert tune.main(argv) == 0
    first = capfd.readouterr().out
    summary = yaml.safe_load((tmp_path / "tune" / "synthetic" / "db_mtl.yaml").read_text())
    assert summary["trials"] == 2 and set(summary["best_params"]) == {tune.LR_KEY, "method.beta", "method.beta_sigma"}
    trials = pd.read_csv(tmp_path / "tune" / "synthetic" / "db_mtl_trials.csv")
    assert len(trials) == 2 and summary["best_value"] == pytest.approx(trials["val_delta_p"].max())
    assert all("/runs/synthetic/db_mtl_trial-" in d for d in trials["run_dir"])  # trials stay out of the store
    tuned = tmp_path / "store" / "synthetic" / "db_mtl_tuned2" / "seed0" / "summary.json"
    assert tuned.exists()
    assert tune.main(argv) == 0  # relaunch: the same trials, all finished
    again = capfd.readouterr().out
    assert again.count("is finished (summary.json exists); skipping") == 3  # 2 trials + the tuned run
    assert yaml.safe_load((tmp_path / "tune" / "synthetic" / "db_mtl.yaml").read_text()) == summary
    assert "best of 2 trials" in first
