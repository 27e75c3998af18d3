"""A run's results are files: config.yaml, metrics.jsonl, summary.json, checkpoint.pt.

Writes are atomic (temp file + rename) so a run killed at any moment leaves either the previous
or the new file, never a torn one; finished results are never overwritten unless forced.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        self.path.mkdir(parents=True, exist_ok=True)
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
        p = self.path / CHECKPOINT
        if not p.exists():
            return None
        return torch.load(p, map_location="cpu", weights_only=False)


def git_commit() -> str | None:
    """The project's git commit (with '-dirty' if the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None
