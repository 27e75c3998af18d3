"""Measurements of the suite's own speed (the scripts under scripts/bench_*.py are thin wrappers)."""
from __future__ import annotations

import platform
from pathlib import Path

import torch


def machine(threads: int | None, device: str = "cpu") -> str:
    """One line naming the OS, CPU model, thread count, GPU (for a CUDA device) and torch version."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f" | {torch.cuda.get_device_name(torch.device(device))}" if torch.device(device).type == "cuda" else ""
    return (f"{platform.system()} {platform.machine()} | {cpu} | threads={threads or torch.get_num_threads()}"
            f"{gpu} | torch {torch.__version__}")
