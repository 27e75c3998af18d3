"""The build lock: many array jobs may start on an empty cache at once; one builds (under an
exclusive file lock, writing to temporary names renamed into place), the others wait, then load."""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def build_lock(processed: Path, verbose: bool = True):
    """Exclusive lock on <processed>/.build.lock (released by the kernel if the holder dies)."""
    processed.mkdir(parents=True, exist_ok=True)
    with open(processed / ".build.lock", "a+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if verbose:
                print(f"[qm9] another process is building the cache in {processed}; waiting for it", flush=True)
            fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)
