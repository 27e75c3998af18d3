"""Can a Hydra launcher (configs/launcher/<name>.yaml) run here? Checked before a multirun starts,
so a machine without SLURM or without a GPU for Ray says so in one line instead of a traceback from
inside the launcher."""
from __future__ import annotations

import shutil

from mtl.errors import InvalidValue


def check_launcher(name: str, overrides: list[str] = ()) -> None:
    """Raise InvalidValue if `launcher=<name>` cannot run on this machine (`overrides`: the command
    line's, e.g. hydra.launcher.num_gpus=2 gives Ray GPUs to place on without a driver: tests)."""
    if name == "slurm" and shutil.which("sbatch") is None:
        raise InvalidValue("launcher=slurm: there is no SLURM here (no `sbatch` on PATH); run on the cluster's "
                           "login node, or use launcher=local (one run after the other) or launcher=submitit_local")
    if name == "gpus":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InvalidValue("launcher=gpus: Ray is not installed (pip install 'ray[default]'); or use "
                               "launcher=local") from None
        from mtl.run.device import gpu_surely_absent

        told = any(o.startswith("hydra.launcher.num_gpus=") and o.split("=", 1)[1] not in ("0", "null")
                   for o in overrides)
        if gpu_surely_absent() and not told:
            raise InvalidValue("launcher=gpus: this machine has no GPU for Ray to place runs on; use "
                               "launcher=local or launcher=submitit_local (CPU runs)")


def launcher_of(argv: list[str]) -> str | None:
    """The `launcher=<name>` override of a command line, if any."""
    return next((a.split("=", 1)[1] for a in argv if a.startswith("launcher=")), None)
