"""Mixed precision, opt-in (`trainer.precision=fp32|bf16|fp16`; default fp32, the papers' setting).

`autocast(precision, device)` wraps the forward pass and the loss computation: matmuls and
convolutions run in bf16/fp16, reductions and losses in fp32 (torch.autocast's op lists). Losses
are returned to the balancing method in fp32 (`losses.float()`), so log transforms, EMA buffers,
norms and solvers see fp32 values whatever the precision.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} unknown; choose one of {PRECISIONS} (trainer.precision)")
    return precision


def autocast(precision: str, device: str | torch.device):
    """Context for the forward pass: a no-op for fp32, torch.autocast in bf16/fp16 otherwise."""
    if check(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])
