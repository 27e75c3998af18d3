"""Per-task terms of a loss-weighting method outside its own `backward` (used by `combo`).

`Method.backward` records the raw losses (epoch means, step count) and applies the loss
transform before `_backward`; a combined method has to do the same for its loss part before it
hands the per-task terms to a gradient method, so both paths share this one helper.
"""
from __future__ import annotations

import torch

from mtl.methods.base import LossWeighting, check_losses, transform_losses


class RawLossesMixin:
    """Keeps the untransformed losses of the current step in `self.raw_losses` (IGB computes its
    weights from raw losses but applies them to log losses)."""

    raw_losses: torch.Tensor | None = None

    def backward(self, losses, *args, **kwargs):
        check_losses(self, losses, values=False)  # the values are checked in Method.backward
        self.raw_losses = losses.detach()
        return super().backward(losses, *args, **kwargs)


def loss_terms(method: LossWeighting, losses: torch.Tensor, batch_size=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The bookkeeping `Method.backward` does, then `method.task_terms` of the transformed losses."""
    check_losses(method, losses)
    raw = losses.detach()
    method.raw_losses = raw
    method.record_losses(raw, batch_size)
    method.step_count += 1
    return method.task_terms(transform_losses(losses, method.loss_transform))
