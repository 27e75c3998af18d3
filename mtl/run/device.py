"""Where a run executes: device choice (never a silent fall-back to the CPU) and cuDNN policy."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mtl.errors import InvalidValue, NoGPU

if TYPE_CHECKING:
    import torch

DEVICE_HINT = "use auto, cpu, cuda or cuda:N"


def no_gpu_message(benchmark: str) -> str:
    return (f"device=auto found no GPU, and benchmark={benchmark} is a GPU protocol (days on a CPU); "
            f"run it on a GPU machine, or pass device=cpu to run it on the CPU anyway")


def gpu_surely_absent() -> bool:
    """True only where no NVIDIA driver is loaded (Linux: no /proc/driver/nvidia, no /dev/nvidia0..):
    then CUDA cannot be available and the answer needs no `import torch` (seconds)."""
    import glob
    import sys

    if not sys.platform.startswith("linux"):
        return False
    return not os.path.exists("/proc/driver/nvidia") and not glob.glob("/dev/nvidia[0-9]*")


def precheck_device(name: str, *, needs_gpu: bool = False, benchmark: str = "") -> None:
    """What resolve_device would refuse, decided without importing torch where that is certain:
    a device name of an unsupported type, and `auto`/`cuda` on a machine without an NVIDIA driver."""
    import re

    name = str(name)
    if name == "auto":
        if needs_gpu and gpu_surely_absent():
            raise NoGPU(no_gpu_message(benchmark))
        return
    if name in ("mps", "xpu") or re.fullmatch(r"(mps|xpu)(:\d+)?", name):
        raise InvalidValue(f"device={name}: not supported by this suite (its methods, determinism settings and "
                           f"tests cover CUDA and the CPU only); {DEVICE_HINT}")
    if re.fullmatch(r"cuda(:\d+)?", name) and gpu_surely_absent():
        raise NoGPU(f"device={name} but this machine has no usable CUDA GPU (no NVIDIA driver loaded); "
                    f"use device=auto or device=cpu")


def resolve_device(name: str, *, needs_gpu: bool = False, benchmark: str = "") -> torch.device:
    """`auto` -> CUDA if present, else CPU; but a benchmark whose protocol is GPU work
    (`benchmark.needs_gpu`) stops instead of crawling on the CPU unless `device=cpu` is explicit."""
    import torch

    precheck_device(name, needs_gpu=needs_gpu, benchmark=benchmark)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if needs_gpu:
            raise NoGPU(no_gpu_message(benchmark))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InvalidValue(f"device={name!r}: not a device; {DEVICE_HINT}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NoGPU(f"device={name} but this machine has no usable CUDA GPU "
                        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
                        f"use device=auto or device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NoGPU(f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible; "
                        f"use device=cuda (the first visible GPU) or a smaller index")
    elif device.type != "cpu":
        raise InvalidValue(f"device={name!r}: unsupported device type; {DEVICE_HINT}")
    return device


def describe(device: torch.device) -> dict[str, Any]:
    """What the run actually ran on (recorded in config.yaml's `runtime` and in summary.json)."""
    import torch

    out: dict[str, Any] = {"device": str(device), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        out["gpu_name"] = torch.cuda.get_device_name(index)
        out["gpu_memory_gb"] = round(torch.cuda.get_device_properties(index).total_memory / 2**30, 1)
    return out


def configure_determinism(deterministic: bool) -> None:
    """cuDNN policy. deterministic=True (LibMTL's and nash-mtl's setting): deterministic kernels and
    no autotuning, so a CUDA run resumed from a checkpoint repeats the uninterrupted run's numbers on
    the same GPU model, driver and library versions. False lets cuDNN pick the fastest kernels
    (faster convolutions, run-to-run differences at float rounding level)."""
    import torch

    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


SPEEDS = ("exact", "fast")


def speed_settings(speed: str, deterministic: bool, channels_last: bool) -> dict[str, Any]:
    """What `trainer.speed` resolves to on a GPU (recorded in config.yaml's `runtime`).

    exact (default): the keys as given (`trainer.deterministic`, default true: deterministic cuDNN,
    no autotuning, fp32 matmuls in full fp32; cuDNN's fp32 convolutions use TF32, PyTorch's default),
    so a resumed CUDA run repeats the uninterrupted one. fast: the fastest setting that changes no
    result beyond float rounding: cuDNN autotuning with non-deterministic kernels
    (deterministic=false), NHWC conv nets (channels_last), TF32 matmuls as the convolutions already
    use (float32_matmul_precision='high'). Precision (trainer.precision) is not changed by either.
    Which is faster, and by how much, is what `make gpu-proof` measures (docs/speed.md)."""
    if speed not in SPEEDS:
        raise InvalidValue(f"trainer.speed={speed!r}; choose one of {SPEEDS} (exact: repeatable, fast: autotuned)")
    if speed == "fast":
        return {"speed": "fast", "deterministic": False, "channels_last": True, "matmul_precision": "high"}
    return {"speed": "exact", "deterministic": bool(deterministic), "channels_last": bool(channels_last),
            "matmul_precision": "highest"}


def apply_speed(settings: dict[str, Any]) -> None:
    import torch

    configure_determinism(settings["deterministic"])
    torch.set_float32_matmul_precision(settings["matmul_precision"])
