"""Multi-task loss and gradient balancing: methods, gradient engine, trainer, metrics."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    """`${mtl_cpus:<loader workers>}` = workers + 1 (the training process): the CPUs a launcher
    asks for per run, so SLURM and Ray reserve what the benchmark's data loader uses."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("mtl_cpus"):
        OmegaConf.register_new_resolver("mtl_cpus", lambda workers=0: int(workers or 0) + 1)


_register_resolvers()
