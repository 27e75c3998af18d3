"""The benchmark registry. A benchmark is one config (configs/benchmark/<name>.yaml) whose
`build._target_` names a module here; the module has `build(**build)` (data + model, lazy: only
called by the trainer) and `tasks(**build)` (tasks and metric directions, no data needed).

    available()            -> benchmark names (the YAML files)
    spec("nyuv2")          -> BenchmarkSpec: tasks, protocol, STL reference, paper-table mapping
    from_config(cfg.benchmark) -> the same for an already composed block
    num_tasks(cfg.benchmark)   -> T (no data read)

Every tool that needs a benchmark's tasks or directions (tables, workflows, the STL reference
script, checks) reads them from `spec()`; nothing else restates them.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from mtl.benchmarks.base import Metrics, MetricSpec, TaskSpec
from mtl.paths import CONFIG_DIR

BENCHMARK_CONFIGS = CONFIG_DIR / "benchmark"



def available() -> list[str]:
    """Names of the registered benchmarks (one YAML each under configs/benchmark/)."""
    return sorted(p.stem for p in BENCHMARK_CONFIGS.glob("*.yaml"))


@dataclass(frozen=True)
class BenchmarkSpec:
    """What is known of a benchmark before its data is: the composed config block, its tasks with
    metric directions and units, its protocol and the paper table it is compared with."""

    name: str
    config: dict[str, Any]          # the composed `benchmark` block (resolved)
    tasks: tuple[TaskSpec, ...]

    @property
    def module(self) -> str:
        return self.config["build"]["_target_"].rsplit(".", 1)[0]

    @property
    def protocol(self) -> dict[str, Any]:
        return self.config["protocol"]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def keys(self) -> list[str]:
        """Every reported `task/metric`, in task order."""
        return [f"{t.name}/{m.name}" for t in self.tasks for m in t.metrics]

    def metric(self, key: str) -> MetricSpec:
        """The MetricSpec of `task/metric`."""
        task, _, metric = key.partition("/")
        for t in self.tasks:
            if t.name == task:
                return t.metric(metric)
        raise KeyError(f"benchmark {self.name!r} has no task {task!r}; its tasks are {self.task_names}")

    def higher_is_better(self, key: str) -> bool:
        return self.metric(key).higher_is_better

    @property
    def reference(self) -> Metrics:
        """The STL reference of Δp (protocol.reference.metrics)."""
        return self.protocol["reference"]["metrics"]

    @property
    def reference_m(self) -> Metrics:
        """The reference of Δm (protocol.reference_m, IGB's protocol), else the Δp reference."""
        ref_m = self.protocol.get("reference_m")
        return ref_m["metrics"] if ref_m else self.reference

    @property
    def reference_source(self) -> str:
        return str(self.protocol["reference"].get("source", ""))

    @property
    def paper(self):
        """The DB-MTL paper table this benchmark is compared with (mtl.benchmarks.paper.PaperTable), or None."""
        from mtl.benchmarks.paper import paper_table

        return paper_table(self.name)


def spec(name: str, overrides: Sequence[str] = ()) -> BenchmarkSpec:
    """The spec of benchmark `name` with `benchmark.*` overrides (e.g. "benchmark.build.num_tasks=4").
    Composes the config (Hydra defaults lists included) and asks the module for its tasks; no data is
    read. Raises KeyError naming the available benchmarks for an unknown name."""
    return _spec(str(name), tuple(overrides))


def from_config(benchmark_cfg: Any) -> BenchmarkSpec:
    """The spec of an already composed `benchmark` block (a DictConfig or a plain dict), e.g. the
    trainer's `cfg.benchmark`: no second composition."""
    from omegaconf import DictConfig, OmegaConf

    config = OmegaConf.to_container(benchmark_cfg, resolve=True) if isinstance(benchmark_cfg, DictConfig) \
        else dict(benchmark_cfg)
    build = {k: v for k, v in config["build"].items() if k != "_target_"}
    module = importlib.import_module(config["build"]["_target_"].rsplit(".", 1)[0])
    return BenchmarkSpec(name=str(config["name"]), config=config, tasks=tuple(module.tasks(**build)))


def num_tasks(benchmark_cfg: Any) -> int:
    """T of a composed `benchmark` block, from the module's tasks (no data read): the one place
    the checks (mtl.run.validate) and the campaigns (STL per task, 1/T sweep points) take it from."""
    return len(from_config(benchmark_cfg).tasks)


@lru_cache(maxsize=None)
def _spec(name: str, overrides: tuple[str, ...]) -> BenchmarkSpec:
    if name not in available():
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(available())} "
                       f"(one YAML each under {BENCHMARK_CONFIGS})")
    from mtl.config.compose import compose

    return from_config(compose([f"benchmark={name}", "logger=none", *overrides]).benchmark)
