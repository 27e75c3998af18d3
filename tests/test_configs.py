"""Every benchmark x method config composes; every method config creates its method."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mtl import methods
from mtl.config.compose import compose

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BENCHMARKS = sorted(p.stem for p in (CONFIGS / "benchmark").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml"))


def test_there_are_configs():
    assert "synthetic" in BENCHMARKS and "ew" in METHODS


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_benchmark_config_has_protocol(bench):
    cfg = compose([f"benchmark={bench}"])
    assert cfg.benchmark.name
    assert cfg.benchmark.build._target_.startswith("mtl.benchmarks.")
    p = cfg.benchmark.protocol
    assert p.epochs > 0 and p.optimizer._target_.startswith("torch.optim.")
    assert p.selection in ("best_val", "best_test", "last10")
    assert p.reference.source and p.reference.metrics


@pytest.mark.parametrize("method", METHODS)
def test_method_config_creates_method(method):
    cfg = OmegaConf.to_container(compose([f"method={method}"]).method, resolve=True)
    name = cfg.pop("name")
    assert name in methods.available(), f"configs/method/{method}.yaml names unregistered method {name!r}"
    m = methods.create(name, num_tasks=3, **cfg)
    assert isinstance(m, methods.Method)


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_every_method_composes_with(bench):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):  # one init, many composes
        for method in METHODS:
            cfg = hydra_compose("train", overrides=[f"benchmark={bench}", f"method={method}"])
            assert cfg.run.dir.endswith(f"{cfg.benchmark.name}/{cfg.method.name}/seed0")


def test_paper_campaigns_sweep_the_one_method_list():
    """Every reproduce_<bench> of a paper table sweeps configs/methods/paper.yaml, which is the paper
    table's method rows (STL aside) in the paper's order; no experiment restates the list."""
    from mtl.benchmarks.paper import TABLES, campaign_methods, load_paper
    from mtl.campaigns.workflows import load_experiment, sweep_params

    listed = campaign_methods()
    assert len(listed) == 21 and len(set(listed)) == 21
    for bench in TABLES:
        assert [m for m in load_paper(bench).order if m != "stl"] == listed, bench
        params = sweep_params(load_experiment(f"reproduce_{bench}"))
        assert params["method"] == listed and params["benchmark"] == [bench]
        raw = OmegaConf.load(CONFIGS / "experiment" / f"reproduce_{bench}.yaml")
        assert OmegaConf.select(raw, "hydra.sweeper.params.method") is None, bench
    assert set(listed) <= set(METHODS)


def test_shared_bases_are_not_benchmarks():
    """configs/benchmark/base/*.yaml hold what several benchmarks share (pulled in by their defaults
    lists); they are neither listed nor composable as benchmarks of their own."""
    from mtl.benchmarks import available

    bases = sorted(p.stem for p in (CONFIGS / "benchmark" / "base").glob("*.yaml"))
    assert bases and not any(b.startswith("base") for b in available())
    for base in bases:
        users = [b for b in BENCHMARKS if f"base/{base}@_here_" in (CONFIGS / "benchmark" / f"{b}.yaml").read_text()]
        assert len(users) >= 2, (base, users)
