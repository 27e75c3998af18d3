"""Command line: `python -m mtl.train benchmark=<b> method=<m> seed=<s> [key=value ...]` (also the
`mtl-train` command). From Python: `mtl.run.entry.run(["benchmark=synthetic", "method=ew"])`.

Exit statuses (mtl/errors.py): 0 done (or finished before: skipped), 2 a user error (one `error:`
line says what and how to fix it), 3 stopped by a signal (SIGINT/Ctrl-C, SIGTERM, SIGUSR1/2; a
checkpoint is saved if training had started): run the same command again, or requeue, to go on.
A multirun (`-m`) runs every job even when some fail, and lists the failures at the end.
"""
from __future__ import annotations

if __name__ == "__main__":  # signals during the imports below already end as a stop (exit 3)
    from mtl.run.preemption import stop_on_signals

    stop_on_signals(immediately=True)

import json
import os
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mtl.config.compose import CONFIG_DIR, check_experiment, compose, composition_error_type, explain_composition_error
from mtl.errors import EXIT_PREEMPTED, EXIT_USER_ERROR
from mtl.run.preemption import Interrupted, stop_message, stop_on_signals

FAILURES = "MTL_MULTIRUN_FAILURES"  # a multirun's jobs append their failures here (JSON lines)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def error_line(err: BaseException, overrides: list[str] = ()) -> str | None:
    """`error: <Type>: <message>` for the errors a user can fix, else None (a bug: traceback)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mtl.errors import MTLError

    if isinstance(err, MTLError):
        return f"error: {type(err).__name__}: {err}"
    if isinstance(err, HydraException):
        return f"error: {composition_error_type(err)}: {explain_composition_error(err, list(overrides))}"
    if isinstance(err, OmegaConfBaseException):  # e.g. an unresolvable ${...} in run.tag
        return f"error: InvalidValue: {_explain_omegaconf(err)}"
    return None


def _explain_omegaconf(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    key = next((ln.split(":", 1)[1].strip() for ln in text if ln.strip().startswith("full_key:")), "")
    what = text[0] if text else type(err).__name__
    return (f"{key or 'config'}: {what}; fix the ${{...}} interpolation (a key of the composed config, e.g. "
            f"${{method.beta}}, or an `oc.*` resolver), or quote a literal `$` as \\$")


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(line: str, rc: int) -> None:
    from hydra.core.hydra_config import HydraConfig

    path = os.environ.get(FAILURES)
    if not path:
        return
    job = " ".join(HydraConfig.get().overrides.task)
    with open(path, "a") as f:  # one short line per write: appends of several jobs do not interleave
        f.write(json.dumps({"job": job, "line": line, "rc": rc}) + "\n")


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from mtl.config import schema
    from mtl.errors import Preempted
    from mtl.run.entry import train

    multirun = _multirun()
    try:
        schema.check(cfg)  # what compose() checks, for runs Hydra composed itself (multiruns)
        check_experiment(HydraConfig.get().runtime.choices.get("experiment"))
        train(cfg)
    except Preempted as err:  # checkpoint saved; exit status 3 tells a wrapper script to requeue (a
        _say(f"[mtl] {err}")  # multirun stops too: the machine is being taken away)
        sys.exit(EXIT_PREEMPTED)
    except Exception as err:  # noqa: BLE001 - our errors already say what and how: no traceback
        line = error_line(err)
        if line is None and not multirun:
            raise
        if line is None:  # a bug in one job of a multirun: its traceback, then the other jobs
            import traceback

            traceback.print_exc()
            from mtl.errors import brief

            line = f"error: {brief(err)}"
        else:
            _say(line)
        if not multirun:
            sys.exit(EXIT_USER_ERROR)
        _record_failure(line, EXIT_USER_ERROR if error_line(err) else 1)


def precheck(argv: list[str]) -> None:
    """Compose and check a single run's config before Hydra starts (no file is written, and the
    value, name and device checks come before torch is imported), so that a misspelled key, a bad
    value or a missing GPU exits with one line and status 2 instead of Hydra's report."""
    if any(a.startswith("-") for a in argv):  # multirun, --cfg, --help, ...: Hydra handles them
        return
    from mtl.run.device import precheck_device
    from mtl.run.validate import check_values

    try:
        cfg = compose(argv)
        str(cfg.run.dir)  # resolves run.tag's interpolations
        check_values(cfg)  # no torch yet: seconds sooner
        precheck_device(str(cfg.device), needs_gpu=bool(cfg.benchmark.get("needs_gpu", False)),
                        benchmark=cfg.benchmark.name)
        from mtl.run.device import resolve_device
        from mtl.run.validate import validate

        validate(cfg)
        resolve_device(str(cfg.device), needs_gpu=bool(cfg.benchmark.get("needs_gpu", False)),
                       benchmark=cfg.benchmark.name)
        from mtl.run.rundir import RunDir

        RunDir(cfg.run.dir).check_writable()  # Hydra creates its job folder (.hydra_run/) in there
    except Exception as err:  # noqa: BLE001
        line = error_line(err, argv)
        if line is None:
            raise
        _say(line)
        sys.exit(EXIT_USER_ERROR)


def _check_multirun_launcher(argv: list[str]) -> None:
    from mtl.errors import MTLError
    from mtl.run.launchers import check_launcher, launcher_of

    name = launcher_of(argv)
    if name and any(a in ("-m", "--multirun") for a in argv):
        try:
            check_launcher(name, argv)
        except MTLError as err:
            _say(f"error: {type(err).__name__}: {err}")
            sys.exit(EXIT_USER_ERROR)


def report_failures(path: Path) -> int:
    """The failures a multirun's jobs recorded, one line each; the exit status (0 if none)."""
    try:
        rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, ValueError):
        rows = []
    path.unlink(missing_ok=True)
    if not rows:
        return 0
    _say(f"[mtl] {len(rows)} job(s) of this multirun failed (the others ran; finished runs are kept, and the "
         f"same command retries only what is missing):")
    for r in rows:
        _say(f"  {r['job']}: {r['line']}")
    return max(int(r["rc"]) for r in rows) if all(r["rc"] == EXIT_USER_ERROR for r in rows) else 1


def cli() -> None:
    """The `mtl-train` console command: `python -m mtl.train` under another name."""
    stop_on_signals()
    argv = sys.argv[1:]
    failures = None
    try:
        precheck(argv)
        if any(a in ("-m", "--multirun") for a in argv):
            _check_multirun_launcher(argv)
            from mtl.run.launchers import launcher_of

            # the jobs append their failures here: a temp file, or for SLURM (jobs on other nodes)
            # one in ./multirun/, on the shared file system like the sweep folder itself
            where = Path("multirun") if launcher_of(argv) == "slurm" else Path(tempfile.gettempdir())
            where.mkdir(exist_ok=True)
            failures = where / f".mtl-failures.{os.getpid()}.jsonl"
            failures.write_text("")
            os.environ[FAILURES] = str(failures.resolve())
        main()
    except Interrupted as err:
        _say(stop_message(err.name, err.during))
        sys.exit(EXIT_PREEMPTED)
    finally:
        rc = report_failures(failures) if failures is not None else 0
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    cli()
