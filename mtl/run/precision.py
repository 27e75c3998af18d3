"""Mixed precision, opt-in (`trainer.precision=fp32|bf16|fp16`; default fp32, the papers' setting).

`autocast(precision, device)` wraps the forward pass and the loss computation: matmuls and
convolutions run in bf16/fp16, reductions and losses in fp32 (torch.autocast's op lists). Losses
are returned to the balancing method in fp32 (`losses.float()`), so log transforms, EMA buffers,
norms and solvers see fp32 values whatever the precision.

fp16 also needs loss scaling (its smallest normal number is 6e-5: small gradients underflow in the
half-precision backward pass). `steps(precision, ...)` gives the object the trainer's step goes
through: `Unscaled` for fp32/bf16, `LossScaling` (a `torch.amp.GradScaler`) for fp16.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch

from mtl.engine import NonFiniteGradients

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


class Unscaled:
    """fp32 and bf16 (whose range is fp32's): the method fills `.grad`, the optimizer steps."""

    def attach(self, losses: torch.Tensor, rep=None) -> None:
        """Prepare this step's backward passes of `losses` (a no-op without loss scaling)."""

    def backward(self, method, losses, shared, task_params, **kw) -> dict[str, Any]:
        return method.backward(losses, shared, task_params, **kw)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Step the optimizer; true if it stepped (`LossScaling`: false if the step was skipped)."""
        optimizer.step()
        return True

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


SEARCH_BACKOFF = 2.0 ** -4  # the trainer's backoff while no fp16 step has succeeded yet


class LossScaling(Unscaled):
    """fp16 loss scaling with `torch.amp.GradScaler`, transparent to every balancing method.

    The scale S multiplies only the gradients inside the network's backward pass, where fp16 would
    underflow; every gradient a method sees or writes is the true (unscaled) fp32 one:
    - a hook on the per-task losses multiplies the gradient entering the network by S (for stacked
      multi-batch losses [k, T]: on each row's node, which `row_jacobians` differentiates from);
    - a hook on each model parameter divides its gradient by S, in fp32 (parameters are fp32;
      autocast's cast back gives fp32 gradients), before `.grad` accumulation or `autograd.grad`
      returns it. So the per-task Jacobian of the engine (loop or batched), the heads' gradients
      and anything a method backpropagates are unscaled: MGDA's Gram matrix, DB-MTL's EMA of
      gradients, CAGrad's norms see the fp32-run numbers (to fp16 rounding of the forward);
    - in rep-grad mode `Representation.split` hands the heads an fp32 leaf: a hook divides its
      gradient by S (fp32), and one on the fp32 representation multiplies the method's combined
      gradient by S before it enters the fp16 encoder.
    Gradients of the method's own parameters (UW log-variances, GradNorm/IMTL loss scales) are
    taken downstream of the losses and are never scaled; FAMO's and IGBv2's own optimizers step on
    gradients of loss values only. So all `.grad` of the optimizer are unscaled after the method ran.

    Skipping a step. Before a gradient method uses the per-task gradients (and updates state from
    them: DB-MTL's and GradVac's EMAs, Nash-MTL's warm start, MoCo's tracking, ...) the engine checks
    them, shared and task-parameter gradients alike, with one `isfinite` reduction (one host sync
    per step); on inf/NaN it raises `NonFiniteGradients`, the method restores its step counter and
    loss sums and leaves the rest untouched, and `.grad` is filled with NaN so that GradScaler's own
    check skips the step. Then, for every method, `.grad` is multiplied back by S and GradScaler does
    the rest as in any AMP loop: `scaler.step` unscales and checks all gradients (its own host sync)
    and skips the optimizer step if one is inf/NaN; `scaler.update` backs the scale off (x0.5; x1/16 in
    the trainer while no step has succeeded yet, see `search_backoff`) then,
    or grows it (x2) after `growth_interval` clean steps. Powers of two make the multiply-back and
    GradScaler's unscale exact. State a method derives from the loss values alone, before any
    gradient exists (DWA/RLW/IGB weights, STCH, a combination's loss part), is updated on a skipped
    step like a scheduler would be; the loss values themselves are finite (the trainer stops on a
    non-finite loss, which no loss scale can cause or cure).
    """

    def __init__(self, params: Iterable[torch.Tensor], device: str | torch.device,
                 search_backoff: float | None = None, **scaler_kw):
        # `search_backoff`: until the first step succeeds, an overflow divides the (guessed) initial
        # scale by 1/search_backoff instead of 2, so a method whose weights make gradients large
        # (GO4Align's weights reach ~500 on synthetic) finds a working scale in a few skipped steps
        # rather than a dozen; after it, GradScaler's own x0.5 backoff. The phase is GradScaler's
        # `backoff_factor`, so it is part of the checkpointed scaler state.
        self._search_backoff = search_backoff
        self._backoff = scaler_kw.pop("backoff_factor", 0.5)
        self.scaler = torch.amp.GradScaler(torch.device(device).type, backoff_factor=search_backoff or self._backoff,
                                           **scaler_kw)
        self.device = torch.device(device)
        self._scale: torch.Tensor | None = None
        self._skipped = False
        self._hooks = [p.register_hook(self._down) for p in params if p.requires_grad]

    # the current scale as a device tensor (no host read): GradScaler's `scale` applied to a one
    def scale(self) -> torch.Tensor:
        return self.scaler.scale(torch.ones((), device=self.device))

    def _up(self, g: torch.Tensor) -> torch.Tensor:
        return g * self._scale.to(g.dtype)

    def _down(self, g: torch.Tensor) -> torch.Tensor:
        return g / self._scale.to(g.dtype)

    def attach(self, losses: torch.Tensor, rep=None) -> None:
        """Hooks for this step's backward passes (see the class docstring)."""
        self._scale = self.scale()
        fn = losses.grad_fn
        if losses.dim() == 2 and fn is not None and fn.name() == "StackBackward0":
            nodes = {id(n): n for n, _ in fn.next_functions if n is not None}  # one hook per row node
            for node in nodes.values():
                node.register_prehook(lambda grads: tuple(None if g is None else self._up(g) for g in grads))
        elif losses.requires_grad:
            losses.register_hook(self._up)
        if rep is not None:
            rep.leaf.register_hook(self._down)
            rep.value.register_hook(self._up)

    def backward(self, method, losses, shared, task_params, **kw) -> dict[str, Any]:
        self.attach(losses, kw.get("rep"))
        method.engine.check_finite = True
        self._skipped = False
        try:
            return method.backward(losses, shared, task_params, **kw)
        except NonFiniteGradients:
            self._skipped = True
            return {}

    def step(self, optimizer: torch.optim.Optimizer) -> "bool | Stepped":
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if self._skipped:  # GradScaler's own check then skips the step and backs the scale off
            first = next(p for group in optimizer.param_groups for p in group["params"])
            if first.grad is None:
                first.grad = torch.zeros_like(first)
            first.grad.fill_(float("nan"))
        elif grads:
            torch._foreach_mul_(grads, self._scale if self._scale is not None else self.scale())
        before = self.scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        if self._skipped:
            return False
        stepped = Stepped(before, self.scale())
        if self._searching and stepped:  # one host read per step, only until the first step succeeds
            self.scaler._backoff_factor = self._backoff
        return stepped

    @property
    def _searching(self) -> bool:
        return self._search_backoff is not None and self.scaler.get_backoff_factor() == self._search_backoff

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)


class Stepped:
    """Whether GradScaler stepped the optimizer: it backs the scale off exactly when it skips. Read
    lazily (`bool()` is a host sync), so only a caller that needs it (post-step losses) pays."""

    def __init__(self, before: torch.Tensor, after: torch.Tensor):
        self.before, self.after = before, after

    def __bool__(self) -> bool:
        return bool(self.after >= self.before)


def steps(precision: str, params: Iterable[torch.Tensor], device: str | torch.device) -> Unscaled:
    """What the trainer's step goes through: loss scaling for fp16, the plain step otherwise."""
    return LossScaling(params, device, search_backoff=SEARCH_BACKOFF) if check(precision) == "fp16" else Unscaled()
