"""Counting device->host synchronisations in a block of code (e.g. one training step).

A synchronisation stalls the host until the device has caught up; a training step that makes none
lets the host queue the next step's kernels while the device works. Two counters, one interface:

- Python level (every device): a `TorchFunctionMode` counts the calls that synchronise on a GPU:
  `.item()`, `.tolist()`, `bool()`, `float()`, `int()`, `.cpu()`, when made from code
  outside the torch package (torch's own CPU-side bookkeeping, e.g. Adam reading its step counter
  with `.item()`, keeps those tensors on the host even on a GPU and never synchronises). On the CPU
  this is the count of the calls that WOULD synchronise on a GPU.
- Driver level (CUDA only): `torch.cuda.set_sync_debug_mode("warn")` makes PyTorch warn on every
  synchronising operation, including those hidden inside torch ops (`torch.nonzero`, boolean-mask
  indexing). On torch 2.11 / H100 it was seen to miss blocking device->host copies (Nash-MTL's
  `.cpu()` of its Gram matrix counted 0), so on CUDA the count is the larger of the two counts.

    with SyncCounter("cpu") as c:
        step()
    print(c.count, c.sites)
"""
from __future__ import annotations

import collections
import os
import sys
import warnings

import torch
from torch.overrides import TorchFunctionMode

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# Tensor methods that copy a value to the host (a synchronisation on an accelerator)
_SYNC_METHODS = frozenset({
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
    torch.Tensor.__int__, torch.Tensor.cpu,
})  # not .numpy(): it only accepts host tensors, whose copy (.cpu()) was already counted


class _CountingMode(TorchFunctionMode):
    def __init__(self, counter: "SyncCounter"):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _SYNC_METHODS:
            frame = sys._getframe(1)
            filename = frame.f_code.co_filename
            if not filename.startswith(_TORCH_DIR):
                self.counter._record(f"{os.path.basename(filename)}:{frame.f_lineno} {func.__name__}")
        return func(*args, **(kwargs or {}))


class SyncCounter:
    """Context manager counting host synchronisations on `device` (see module docstring).

    count: the count (CPU: Python level; CUDA: the larger of Python and driver level);
    python_count, driver_count: each counter's own count (driver_count is None off CUDA);
    sites: Counter of "file:line what" (Python level) and warning texts (driver level)."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.python_count = 0
        self.driver_count: int | None = None
        self.sites: collections.Counter[str] = collections.Counter()

    @property
    def count(self) -> int:
        return max(self.python_count, self.driver_count or 0)

    def _record(self, site: str) -> None:
        self.python_count += 1
        self.sites[site] += 1

    def __enter__(self) -> "SyncCounter":
        if self.device.type == "cuda":
            self._warnings = warnings.catch_warnings(record=True)
            self._caught = self._warnings.__enter__()
            warnings.simplefilter("always")
            self._previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
        self._mode = _CountingMode(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        if self.device.type == "cuda":
            torch.cuda.set_sync_debug_mode(self._previous)
            self._warnings.__exit__(*exc)
            self.driver_count = 0
            for w in self._caught:
                if "synchronizing" in str(w.message):
                    self.driver_count += 1
                    self.sites["driver: " + str(w.message).splitlines()[0][:120]] += 1
