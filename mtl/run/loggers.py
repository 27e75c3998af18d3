"""Experiment trackers. W&B mirrors the run files (offline by default); it is never the source
of truth: tables and plots are regenerated from the run directory alone."""
from __future__ import annotations

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


def _init(*, mode: str, dir: str, init_timeout: float, **kwargs: Any):
    """wandb.init in `dir`; an unreachable server in online mode is one LoggerError line."""
    import wandb  # imported lazily: `logger=none` needs no wandb

    Path(dir).mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(mode=mode, dir=dir, reinit="finish_previous",
                          settings=wandb.Settings(init_timeout=float(init_timeout)), **kwargs)
    except wandb.errors.CommError as err:
        raise LoggerError(
            f"logger.mode={mode}: W&B could not be reached ({str(err).splitlines()[0][:160]}); use "
            f"logger.mode=offline (sync later with `wandb sync {dir}/wandb/offline-run-*`) or "
            f"logger=none") from None


class WandbLogger(NullLogger):
    """Logs config, per-epoch metrics (incl. task weights / grad norms) and the summary."""

    def __init__(self, mode: str, project: str, entity: str | None, dir: str, group: str, name: str,
                 config: dict[str, Any], init_timeout: float = 30):
        import wandb  # imported lazily: `logger=none` runs need no wandb

        self._wandb = wandb
        self.run = _init(mode=mode, project=project, entity=entity, dir=dir, group=group, name=name,
                         config=config, job_type="train", init_timeout=init_timeout)

    def log_epoch(self, record: dict[str, Any], step: int) -> None:
        self.run.log(_flatten(to_jsonable(record)), step=step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        for k, v in _flatten(to_jsonable(summary)).items():
            self.run.summary[k] = v

    def close(self) -> None:
        self.run.finish()


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
