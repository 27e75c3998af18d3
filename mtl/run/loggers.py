"""Experiment trackers. W&B mirrors the run files (offline by default); it is never the source
of truth: tables and plots are regenerated from the run directory alone."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtl.errors import InvalidValue, LoggerError
from mtl.run.rundir import to_jsonable

MODES = ("offline", "online", "disabled")


def check_logger(cfg: dict[str, Any]) -> None:
    """Before anything is written: the logger exists, its mode is known, online mode has a key."""
    kind = cfg.get("name", "none")
    if kind not in ("none", "wandb"):
        raise InvalidValue(f"logger={kind!r}: unknown; choose logger=wandb or logger=none")
    if kind == "wandb":
        mode = cfg.get("mode")
        if mode not in MODES:
            raise InvalidValue(f"logger.mode={mode!r}: unknown; choose one of {', '.join(MODES)}")
        if mode != "disabled" and cfg.get("dir"):
            check_dir(Path(str(cfg["dir"])))
        if mode == "online":
            import wandb

            if not wandb.login(prompt=False, verify=False):
                raise InvalidValue("logger.mode=online: no W&B API key on this machine; run `wandb login` "
                                   "or set WANDB_API_KEY, or use logger.mode=offline and `wandb sync` later")


class NullLogger:
    def log_config(self, config: dict[str, Any]) -> None: ...
    def log_epoch(self, record: dict[str, Any], step: int) -> None: ...
    def log_summary(self, summary: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            out.update({f"{key}/{i}": x for i, x in enumerate(v)})
        else:
            out[key] = v
    return out


MIN_FREE = 16 * 2**20  # bytes W&B needs free in logger.dir to start (its logs, the run's .wandb file)

OFFLINE_ENV = {"WANDB_ERROR_REPORTING": "false",  # no crash reports (sentry) from wandb or its service
               "WANDB_DISABLE_CODE": "true"}


def offline_settings() -> dict[str, Any]:
    """wandb settings for `logger.mode=offline` that keep everything on this machine: no system
    metrics or machine/cloud probes, no console capture (the run directory keeps the output), and
    the process-wide analytics (OpenTelemetry export, which probes api.wandb.ai / a CoreWeave host
    even offline) switched off. Also sets OFFLINE_ENV for wandb's service process (where unset)."""
    import os

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:  # wandb >= 0.2x: telemetry export runs in this process whatever the run's mode
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):
        pass
    return {"x_disable_stats": True, "x_disable_machine_info": True, "x_disable_viewer": True,
            "console": "off", "disable_code": True, "disable_job_creation": True}


def check_dir(path: Path) -> None:
    """Before anything is written: `logger.dir` is no file, and its disk has room (nothing created)."""
    import errno
    import shutil

    if path.exists() and not path.is_dir():
        raise LoggerError(f"logger.dir={path}: is a file, not a folder; remove it or set logger.dir=<folder> "
                          f"(or logger=none)")
    sub = path / "wandb"
    if sub.exists() and not sub.is_dir():
        raise LoggerError(f"logger.dir={path}: {sub} is a file, not a folder; remove it or set "
                          f"logger.dir=<another folder> (or logger=none)")
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and shutil.disk_usage(existing).free < MIN_FREE:
        raise _storage_error(existing, OSError(errno.ENOSPC, "No space left on device"))


def _check_dir(path: Path) -> None:
    """The W&B folder exists and is a writable folder (one line otherwise)."""
    if path.exists() and not path.is_dir():
        raise LoggerError(f"logger.dir={path}: is a file, not a folder; remove it or set logger.dir=<folder> "
                          f"(or logger=none)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _storage_error(path, err) from None
    import errno
    import shutil

    if shutil.disk_usage(path).free < MIN_FREE:  # wandb would log ~14,000 lines of "Logging error"
        raise _storage_error(path, OSError(errno.ENOSPC, "No space left on device"))
    for name in ("wandb",):  # wandb's own subfolder
        sub = path / name
        if sub.exists() and not sub.is_dir():
            raise LoggerError(f"logger.dir={path}: {sub} is a file, not a folder; remove it or set "
                              f"logger.dir=<another folder> (or logger=none)")


def _storage_error(path: Path, err: OSError) -> LoggerError:
    import errno
    import shutil

    code = getattr(err, "errno", None)
    try:
        free = shutil.disk_usage(path if path.exists() else path.parent).free
    except OSError:
        free = None
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < 64 * 2**20):
        why = f"the disk is full ({free / 2**20:.0f} MiB left)" if free is not None else "the disk is full"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"it is not writable ({os.strerror(code)})"
    else:
        why = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return LoggerError(f"logger.dir={path}: W&B cannot write there: {why}; free space or set logger.dir=<folder> "
                       f"elsewhere, or run with logger=none (the run directory is the source of truth)")


def _init(*, mode: str, dir: str, init_timeout: float, **kwargs: Any):
    """wandb.init in `dir`; an unreachable server in online mode is one LoggerError line."""
    import wandb  # imported lazily: `logger=none` needs no wandb

    _check_dir(Path(dir))
    settings: dict[str, Any] = {"init_timeout": float(init_timeout)}
    if mode == "offline":
        settings.update(offline_settings())
    try:
        return wandb.init(mode=mode, dir=dir, reinit="finish_previous", settings=wandb.Settings(**settings), **kwargs)
    except OSError as err:  # a full disk, a read-only folder, a file where the folder should be
        raise _storage_error(Path(dir), err) from None
    except wandb.errors.CommError as err:
        raise LoggerError(
            f"logger.mode={mode}: W&B could not be reached ({str(err).splitlines()[0][:160]}); use "
            f"logger.mode=offline (sync later with `wandb sync {dir}/wandb/offline-run-*`) or "
            f"logger=none") from None


class WandbLogger(NullLogger):
    """Logs config, per-epoch metrics (incl. task weights / grad norms) and the summary."""

    def __init__(self, mode: str, project: str, entity: str | None, dir: str, group: str, name: str,
                 config: dict[str, Any], init_timeout: float = 30):
        import logging

        import wandb  # imported lazily: `logger=none` runs need no wandb

        self._wandb, self.dir = wandb, Path(dir)
        # a disk that fills during the run: wandb's log handlers would print a traceback per record
        # ("--- Logging error ---", thousands of lines); the one LoggerError line says it instead
        self._raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
        try:
            self.run = _init(mode=mode, project=project, entity=entity, dir=dir, group=group, name=name,
                             config=config, job_type="train", init_timeout=init_timeout)
        except BaseException:
            logging.raiseExceptions = self._raise_exceptions
            raise

    def log_epoch(self, record: dict[str, Any], step: int) -> None:
        try:
            self.run.log(_flatten(to_jsonable(record)), step=step)
        except OSError as err:  # e.g. the disk under logger.dir filled up during the run
            raise _storage_error(self.dir, err) from None

    def log_summary(self, summary: dict[str, Any]) -> None:
        try:
            for k, v in _flatten(to_jsonable(summary)).items():
                self.run.summary[k] = v
        except OSError as err:
            raise _storage_error(self.dir, err) from None

    def close(self) -> None:
        import logging

        try:
            self.run.finish()
        except OSError as err:
            raise _storage_error(self.dir, err) from None
        finally:
            logging.raiseExceptions = self._raise_exceptions


def make_logger(cfg: dict[str, Any], run_name: str, config: dict[str, Any]) -> NullLogger:
    kind = cfg.get("name", "none")
    if kind == "none":
        return NullLogger()
    if kind == "wandb":
        if cfg.get("mode") == "disabled":
            return NullLogger()
        return WandbLogger(cfg["mode"], cfg["project"], cfg.get("entity"), cfg["dir"], cfg["group"],
                           run_name, config, init_timeout=cfg.get("init_timeout", 30))
    raise ValueError(f"logger {kind!r} unknown; choose logger=wandb or logger=none")


TABLE_GROUP = "tables"  # W&B group of the table runs, beside the runs' benchmark/method groups


def log_table_run(cfg: dict[str, Any], name: str, columns: list[str], rows: list[list[Any]],
                  images: dict[str, str | Path], config: dict[str, Any]) -> str | None:
    """With the wandb logger config `cfg`: one W&B run `name` (job_type "table", group "tables", the
    runs' project, entity, mode and dir) logging `table` (a wandb.Table of `columns` x `rows`) and
    every image as `plots/<key>`. Returns the run's directory; None (nothing logged) for logger=none
    or mode=disabled. Each regeneration logs a new run of the same name."""
    if cfg.get("name", "none") == "none" or cfg.get("mode") == "disabled":
        return None
    if cfg.get("name") != "wandb":
        raise InvalidValue(f"logger={cfg.get('name')!r}: unknown; choose logger=wandb or logger=none")
    import wandb

    run = _init(mode=cfg["mode"], project=cfg["project"], entity=cfg.get("entity"), dir=cfg["dir"],
                group=TABLE_GROUP, name=name, config=config, job_type="table",
                init_timeout=cfg.get("init_timeout", 30))
    try:
        payload: dict[str, Any] = {"table": wandb.Table(columns=list(columns), data=[list(r) for r in rows])}
        payload.update({f"plots/{key}": wandb.Image(str(path)) for key, path in images.items()})
        run.log(payload)
        directory = str(Path(run.dir).parent)
    finally:
        run.finish()
    return directory
