"""`launcher=gpus`: the jobs of a Hydra multirun spread over one machine's GPUs by Ray.

Ray does the placement: each job is a Ray task asking for `gpus_per_job` of a GPU (a fraction runs
several jobs on one GPU) and `cpus_per_job` CPUs, and Ray sets CUDA_VISIBLE_DEVICES in the job's
process to the GPU it was given, so `device=auto` in the job finds exactly that one GPU. A job
runs in a fresh process (`max_calls=1`): the CUDA context and memory of one run never leak into
the next, and each process sees the GPU it was placed on. At most `max_concurrent` jobs run at
once. Finished runs are skipped and interrupted ones resume (the trainer does both), so a
relaunched sweep only trains what is missing.

Hydra discovers this module as a plugin (it lives in the `hydra_plugins` namespace package).
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class RayGPULauncherConf:
    _target_: str = "hydra_plugins.mtl_ray_launcher.ray_launcher.RayGPULauncher"
    gpus_per_job: float = 0.5           # fraction of one GPU per run: 0.5 = two runs share a GPU
    cpus_per_job: float = 2             # data-loader workers + the main process
    max_concurrent: Optional[int] = None  # cap on runs at once (None: as many as the resources allow)
    num_gpus: Optional[int] = None      # GPUs Ray may use (None: all it detects)
    num_cpus: Optional[int] = None      # CPUs Ray may use (None: all it detects)
    ray_init: Dict[str, Any] = field(default_factory=dict)  # extra ray.init() arguments, e.g. {address: auto}


ConfigStore.instance().store(group="hydra/launcher", name="mtl_ray_gpus", node=RayGPULauncherConf,
                             provider="mtl")


def _run_job(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
             singleton_state: dict[Any, Any]) -> JobReturn:
    """Runs in the Ray worker: one Hydra job, with Hydra's global state as the driver had it."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    try:
        return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    except SystemExit as err:  # the job's CLI exits non-zero on a user error: report it, keep the others
        ret = JobReturn(overrides=list(sweep_config.hydra.overrides.task), cfg=sweep_config)
        ret.status = JobStatus.FAILED
        ret.return_value = RuntimeError(f"job exited with status {err.code}")
        return ret


class RayGPULauncher(Launcher):
    def __init__(self, gpus_per_job: float = 0.5, cpus_per_job: float = 2, max_concurrent: Optional[int] = None,
                 num_gpus: Optional[int] = None, num_cpus: Optional[int] = None, ray_init: Any = None) -> None:
        g = float(gpus_per_job)
        if g < 0 or (g > 1 and g != int(g)):
            raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job}: a fraction in [0, 1] or a whole number")
        if max_concurrent is not None and int(max_concurrent) < 1:
            raise ValueError(f"hydra.launcher.max_concurrent={max_concurrent}: must be >= 1 or null")
        self.gpus_per_job, self.cpus_per_job = float(gpus_per_job), float(cpus_per_job)
        self.max_concurrent = None if max_concurrent is None else int(max_concurrent)
        self.num_gpus, self.num_cpus = num_gpus, num_cpus
        self.ray_init = dict(OmegaConf.to_container(ray_init, resolve=True) if isinstance(ray_init, DictConfig)
                             else ray_init or {})
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        started = not ray.is_initialized()
        if started:
            ray.init(num_gpus=self.num_gpus, num_cpus=self.num_cpus, include_dashboard=False,
                     **self.ray_init)
        try:
            return self._launch(ray, job_overrides, initial_job_idx)
        finally:
            if started:  # no idle Ray workers linger after the sweep (they would for ~15 s)
                ray.shutdown()

    def _launch(self, ray, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        gpus = ray.cluster_resources().get("GPU", 0)
        if self.gpus_per_job > 0 and gpus < self.gpus_per_job:
            raise RuntimeError(f"launcher=gpus: Ray sees {gpus:g} GPU(s), a job needs {self.gpus_per_job:g}; "
                               f"run on a GPU machine or use launcher=local")
        per_gpu = int(1 / self.gpus_per_job) if 0 < self.gpus_per_job < 1 else 1
        log.info(f"Ray launcher: {len(job_overrides)} jobs on {gpus:g} GPU(s), {self.gpus_per_job:g} GPU "
                 f"({per_gpu} job(s) per GPU) and {self.cpus_per_job:g} CPUs per job"
                 + (f", at most {self.max_concurrent} at once" if self.max_concurrent else ""))
        remote = ray.remote(num_gpus=self.gpus_per_job, num_cpus=self.cpus_per_job, max_calls=1)(_run_job)
        singleton_state = Singleton.get_state()
        pending, results = [], {}
        for n, overrides in enumerate(job_overrides):
            idx = initial_job_idx + n
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"ray_{idx}"
                sweep_config.hydra.job.num = idx
            if self.max_concurrent is not None and len(pending) >= self.max_concurrent:
                done, pending = ray.wait(pending, num_returns=1)
                results.update({ref: ray.get(ref) for ref in done})
            ref = remote.remote(self.hydra_context, sweep_config, self.task_function, singleton_state)
            pending.append(ref)
            results[ref] = None
        refs = list(results)
        for ref in refs:
            if results[ref] is None:
                results[ref] = ray.get(ref)
        return [results[ref] for ref in refs]


os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every job's log lines reach the terminal in full
