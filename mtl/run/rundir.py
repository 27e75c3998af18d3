"""A run's results are files: config.yaml, metrics.jsonl, summary.json, checkpoint.pt.

Writes are atomic (temp file + rename) so a run killed at any moment leaves either the previous
or the new file, never a torn one; finished results are never overwritten unless forced.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from mtl.errors import DamagedFile, OutOfMemory, RunLocked, StorageError, brief

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
LOCK = ".lock"
REPLACED_SUMMARY = "summary.replaced.json"  # a forced re-run keeps the result it replaces here
STAGING = ".rerun"  # a forced re-run of a finished run trains here until it is complete


def _atomic_write_bytes(path: Path, write) -> None:
    """Write to a temporary file, then rename over `path`: the old file stays intact if anything
    fails (full disk, read-only folder, a kill), and the failure is one line naming the file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # unique: a stray second writer never shares it
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a power cut
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {_storage_reason(path, err)}") from None


def fsync_dir(directory: Path) -> None:
    """fsync a folder, so that a rename inside it is on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (another user's), or not a pid: keep the file
    return True


def remove_stale_tmp(directory: Path) -> list[Path]:
    """Delete `<name>.<pid>.tmp` files (half-written files of _atomic_write_bytes) whose process is
    gone, e.g. after a kill -9 during a checkpoint write (1.1 GB for a NYUv2 DeepLab checkpoint).
    Files of a live process (or of an unreadable pid) are kept. Returns the removed paths."""
    removed = []
    for tmp in Path(directory).glob("*.tmp"):
        parts = tmp.name.split(".")
        if len(parts) < 3 or not parts[-2].isdigit():
            continue
        pid = int(parts[-2])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _storage_reason(path: Path, err: Exception) -> str:
    import errno
    import shutil

    code = getattr(err, "errno", None)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{path.parent} is not writable ({os.strerror(code)}); fix its permissions or write "
                f"elsewhere with run.root=<dir>")
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < 64 * 2**20):
        left = f"{free / 2**20:.0f} MiB left" if free is not None else "no space left"
        return (f"the disk is full ({left}); free space, or write elsewhere with run.root=<dir> "
                f"(run.keep_checkpoint=false keeps only finished summaries)")
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def _out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation failure (host or GPU), not a sign of a damaged file."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return any(s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory",
                                   "defaultcpuallocator", "std::bad_alloc"))


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


class RunDir:
    """One run's folder, e.g. results/runs/<benchmark>/<method>/seed<s>/."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(self) -> "RunDir":
        if self.path.exists() and not self.path.is_dir():
            raise StorageError(f"cannot create {self.path}: a file of that name is in the way; move it away, "
                               f"or set run.root=<dir> (or run.tag=<name>) for another run directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create {self.path}: {_storage_reason(self.path, err)}") from None
        return self

    @property
    def finished(self) -> bool:
        return (self.path / SUMMARY).exists()

    def write_config(self, yaml_text: str) -> None:
        _atomic_write_bytes(self.path / CONFIG, lambda f: f.write(yaml_text.encode()))

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the history (consistent with the checkpoint after a resume)."""
        text = "".join(json.dumps(to_jsonable(r)) + "\n" for r in history)
        _atomic_write_bytes(self.path / METRICS, lambda f: f.write(text.encode()))

    def read_metrics(self) -> list[dict[str, Any]]:
        p = self.path / METRICS
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    def write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps(to_jsonable(summary), indent=2)
        _atomic_write_bytes(self.path / SUMMARY, lambda f: f.write(text.encode()))

    def read_summary(self) -> dict[str, Any]:
        return json.loads((self.path / SUMMARY).read_text())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        _atomic_write_bytes(self.path / CHECKPOINT, lambda f: torch.save(state, f))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint on the CPU (the trainer moves it to the run's device), or None if there is
        none. It is read with torch.load(weights_only=True): tensors and plain containers only, so
        a file that would run code when unpickled (a planted or foreign one) is refused before any
        of it runs. A damaged file stops the run: it is never silently ignored or overwritten."""
        p = self.path / CHECKPOINT
        if not p.exists():
            return None
        restart = "delete it to restart this run from scratch, or pass run.force=true"
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for a torn or foreign file
            if _out_of_memory(err):
                raise OutOfMemory(
                    f"{p}: ran out of memory while loading this checkpoint ({brief(err, 120)}); the file "
                    f"is kept as it is. Free memory (other processes on this machine) or resume on a "
                    f"machine with more RAM; do not delete it") from None
            unsafe = re.search(r"(?:Unsupported global: |unsupported )GLOBAL (\S+)", str(err))
            if unsafe and unsafe.group(1).startswith("numpy."):  # this suite's checkpoints before weights_only
                raise DamagedFile(
                    f"{p}: written by an older version of this suite (or other code): it holds numpy objects "
                    f"({unsafe.group(1)}), which checkpoints are no longer allowed to; it was not loaded. "
                    f"Finish the run with that version, or {restart}") from None
            if unsafe:
                raise DamagedFile(
                    f"{p}: not a checkpoint of this suite (unpickling it would call {unsafe.group(1)}, which "
                    f"this suite's checkpoints never contain; nothing of it was run); {restart}") from None
            raise DamagedFile(f"{p}: cannot be read as a checkpoint ({brief(err, 120)}); {restart}") from None
        if not isinstance(state, dict) or not {"model", "epoch", "history"} <= set(state):
            raise DamagedFile(f"{p}: not a checkpoint of this suite (keys missing); {restart}")
        return state

    def delete_checkpoint(self) -> None:
        (self.path / CHECKPOINT).unlink(missing_ok=True)

    def read_config(self) -> str | None:
        p = self.path / CONFIG
        return p.read_text() if p.exists() else None

    def check_writable(self) -> None:
        """Create the folder and make sure this process can write in it, and that the names the run
        uses (.lock, Hydra's .hydra_run/) are of the right type: one StorageError line otherwise."""
        self.create()
        if not os.access(self.path, os.W_OK):
            raise StorageError(f"cannot write in {self.path}: {_storage_reason(self.path, PermissionError(13, 'denied'))}")
        for name, folder in ((LOCK, False), (".hydra_run", True)):
            p = self.path / name
            if p.exists() and p.is_dir() != folder:
                raise StorageError(f"{p}: is a {'file' if folder else 'folder'} where the run needs a "
                                   f"{'folder' if folder else 'file'}; remove it (it holds nothing of the run's "
                                   f"results) or set run.root=<dir>")

    def check_finished(self) -> bool:
        """True if summary.json exists and parses; a damaged one stops with instructions."""
        p = self.path / SUMMARY
        if not p.exists():
            return False
        try:
            json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise DamagedFile(f"{p}: damaged ({err}); delete it and re-run to resume from the checkpoint, "
                              f"or pass run.force=true to train this run again") from None
        return True

    # ---- a forced re-run of a finished run trains aside: the finished result stays until it is replaced
    def staging(self) -> "RunDir":
        """<run>/.rerun/, emptied: where a forced re-run of this finished run writes its files (run
        readers never look there), so a re-run that fails or is stopped loses nothing."""
        import shutil

        stage = RunDir(self.path / STAGING)
        if stage.path.exists():
            shutil.rmtree(stage.path)
        return stage.create()

    @property
    def pending_promotion(self) -> bool:
        """A forced re-run finished in <run>/.rerun/ but was stopped while moving its files in."""
        return (self.path / STAGING / SUMMARY).exists()

    def promote(self, stage: "RunDir") -> None:
        """Move a completed forced re-run's files from `stage` into this run directory: the old
        summary is kept as summary.replaced.json, the new summary.json is moved last."""
        import shutil

        if (self.path / SUMMARY).exists():
            old = (self.path / SUMMARY).read_bytes()
            _atomic_write_bytes(self.path / REPLACED_SUMMARY, lambda f: f.write(old))
        for name in (CONFIG, METRICS, CHECKPOINT):
            if (stage.path / name).exists():
                os.replace(stage.path / name, self.path / name)
            elif name == CHECKPOINT:  # run.keep_checkpoint=false: the old one belonged to the old result
                (self.path / name).unlink(missing_ok=True)
        os.replace(stage.path / SUMMARY, self.path / SUMMARY)
        fsync_dir(self.path)
        shutil.rmtree(stage.path, ignore_errors=True)

    def finish_promotion(self) -> None:
        if self.pending_promotion:
            self.promote(RunDir(self.path / STAGING))

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold the run directory's writer lock (one training process per run directory).

        A POSIX record lock (fcntl.lockf) on <run>/.lock: the kernel releases it when the holder
        exits in any way, so a lock left by a killed process is taken over at once; lockf also
        works across hosts on NFS v4 and Lustre, where SLURM array tasks share the results
        directory. The holder writes its host, pid and SLURM job id into the file so that a second
        process can name it. With `wait`, the second process blocks until the holder is gone.
        """
        self.create()
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            what = "a folder, not a file" if (self.path / LOCK).is_dir() else _storage_reason(self.path / LOCK, err)
            raise StorageError(f"cannot lock {self.path}: {self.path / LOCK} is {what}; remove it (nothing of the "
                               f"run is in it) or set run.root=<dir>") from None
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                if not wait:
                    raise RunLocked(
                        f"{self.path} is being trained by another process ({holder}); wait for it "
                        f"to finish, stop it, or pass run.wait_for_lock=true to wait") from None
                print(f"[mtl] {self.path} is held by {holder}; waiting (run.wait_for_lock=true)", flush=True)
                fcntl.lockf(fd, fcntl.LOCK_EX)
            info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "slurm_job": os.environ.get("SLURM_JOB_ID")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            remove_stale_tmp(self.path)  # we are the only writer now: leftovers of killed writers go
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        info = {}
    if not info:
        return "a process that has not written its name yet"
    job = f", SLURM job {info['slurm_job']}" if info.get("slurm_job") else ""
    return f"pid {info.get('pid')} on {info.get('host')}{job}, since {info.get('since')}"


def git_commit() -> str | None:
    """The project's git commit (with '-dirty' if the tree has changes), or None outside git."""
    from mtl.paths import PACKAGE

    root = PACKAGE
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None
