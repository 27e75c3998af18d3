"""The balancing-method contract, shared by the trainer and by users' own training loops.

A method receives the per-task losses and fills `.grad` of the shared and task-specific
parameters the way its reference implementation does, then returns diagnostics (weights,
gradient norms). Three families:

- `LossWeighting`: objective = sum of per-task terms (EW, UW, DWA, ...); one backward pass.
- `GradientMethod`: needs the T x D Jacobian of the shared parameters (or of the shared
  representation in rep-grad mode) and replaces the shared gradient by an aggregate; task
  heads get the plain gradient of their own (transformed) loss, or the weighted one when the
  reference finishes with a weighted backward (Nash-MTL, FairGrad, ...).
- anything else overrides `_backward` directly (multi-batch methods such as MoDo).

A loss transform (identity or log) composes with every method: DB-MTL = log + EMA max-norm
gradient balancing; SI = log + EW.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from mtl.engine import (Representation, MODES, GradientEngine, NonFiniteGradients, TaskGradients, accumulate_grads,
                        assign_flat_grad)
from mtl.errors import InvalidCombination, InvalidLoss, MissingEpochStatistics
from mtl.methods._hparams import Bool, Choice, Either, Instance, Spec
from mtl.methods.registry import NEEDS  # noqa: F401  (re-exported: the vocabulary of `needs`)

LOG_EPS = 1e-8  # LibMTL / DB-MTL: log(L + 1e-8)
TRANSFORMS = ("identity", "log")


def transform_losses(losses: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "identity":
        return losses
    if kind == "log":
        return torch.log(losses + LOG_EPS)
    raise ValueError(f"loss_transform {kind!r} unknown; choose one of {TRANSFORMS}")


def _takes_log(method: "Method") -> bool:
    """Whether the method (or a part of a combination) takes the logarithm of the losses."""
    return method.loss_transform == "log" or method.logs_losses or any(_takes_log(p) for p in method.parts())


def loss_flags(method: "Method", losses: torch.Tensor) -> torch.Tensor:
    """[any loss non-finite, any loss negative although `method` takes its logarithm] as one bool
    tensor on the losses' device, so a training loop reads both with one host sync per step (the
    trainer does, then sets `method.checks_loss_values = False` and calls `check_losses` only to
    name the offending loss)."""
    d = losses.detach()
    negative = (d < 0).any() if _takes_log(method) else torch.zeros((), dtype=torch.bool, device=d.device)
    return torch.stack([~torch.isfinite(d).all(), negative])


def check_losses(method: "Method", losses, *, values: bool = True, force: bool = False) -> None:
    """Raise `InvalidLoss` unless `losses` is a tensor of one loss per task ([batches_per_step, T]
    for multi-batch methods) that the method's logarithms are defined on. A negative loss under
    log(L + 1e-8) gives a NaN value but a finite gradient of the wrong sign (1 / (L + 1e-8) < 0),
    which gradient methods (DB-MTL) would follow silently. The sign check reads the values (one host
    sync per step, only for methods that take logs); `values=False` checks type and shape only."""
    expected = (method.num_tasks,) if method.batches_per_step == 1 else (method.batches_per_step, method.num_tasks)
    how = "pass torch.stack([loss_0, loss_1, ...]) with one scalar loss per task"
    if not isinstance(losses, torch.Tensor):
        raise InvalidLoss(f"{method.name}.backward(losses)", f"losses must be a torch.Tensor of shape {expected}, "
                          f"got a {type(losses).__name__}", how)
    if tuple(losses.shape) != expected:
        raise InvalidLoss(f"{method.name}.backward(losses)", f"losses must have shape {expected} "
                          f"({method.num_tasks} tasks), got {tuple(losses.shape)}", how)
    if method.parts():  # a combination: the part that takes the logarithm names itself and its fix
        for part in method.parts():
            check_losses(part, losses, values=values, force=force)
        return
    has_values = losses.device.type != "meta"  # meta tensors (placement checks) carry no values
    if values and (method.checks_loss_values or force) and _takes_log(method) and has_values \
            and bool((losses.detach() < 0).any()):
        rows = losses.detach().reshape(-1, method.num_tasks)
        b, t = (rows < 0).nonzero()[0].tolist()
        fix = ("make the task loss non-negative (e.g. add a constant) or use a method without a log"
               if method.logs_losses else "make the task loss non-negative (e.g. add a constant) or run with "
               "method.loss_transform=identity")
        raise InvalidLoss(f"{method.name}, task {t}", f"loss {rows[b, t].item():.6g} is negative but the method "
                          f"takes its logarithm (undefined below 0; the gradient would flip sign)", fix)


@dataclass
class Aggregate:
    """What a gradient method makes of the task gradients: weights (so the update is
    weights @ G) and/or an explicit direction in the same space as G."""

    weights: torch.Tensor | None = None
    direction: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What the trainer (or a user's loop) hands a method for one step beyond the losses and the
    parameters. A method lists what it needs in `Method.needs`; the trainer fills exactly those
    fields and leaves the others None (per-task gradients need no declaration: the engine computes
    them from the losses).

    - "features": the shared representation of this step's forward (a `Representation`: the heads
      consumed `features.leaf`; `features.value` is attached to the encoder), whatever `rep_grad` is.
    - "sample_losses": per-sample losses [B, T] of the batch, attached to the graph (`losses` is
      their mean over the batch).
    - "val_batch": another training batch, the training set in another order (Auto-Lambda's
      `val_loader`: a second shuffle of the same data), a batch `loss_fn` accepts.
    - "passes": extra forward/backward passes on the model: `model`, this step's `batch`,
      `loss_fn(model, batch) -> losses [T]` (same forward, precision and loss scaling as the
      trainer's) and the network's `optimizer` (its lr, momentum buffers, weight decay).
    Methods that need "passes" or "val_batch" receive the context in `before_step(ctx)`, before the
    trainer's own forward of the step; every context also reaches `_backward` as `self.step_context`.
    """

    features: Any = None
    sample_losses: torch.Tensor | None = None
    val_batch: Any = None
    model: nn.Module | None = None
    batch: Any = None
    loss_fn: Any = None
    optimizer: torch.optim.Optimizer | None = None


class Method(nn.Module):
    """Base class of every balancing method.

    Class attributes a method sets:
        name: registry name.
        supports_rep_grad: may run on gradients w.r.t. the shared representation.
        batches_per_step: how many mini-batches one step consumes (MoDo/SDMGrad use 3; then
            `losses` has shape [batches_per_step, T]).
        wants_post_step_losses: the trainer re-evaluates the losses on the same batch after the
            optimizer step and passes them to `after_step` (FAMO).
        needs: what the method needs beyond the losses, from `NEEDS` (see `StepContext`).
    """

    name: ClassVar[str] = "base"
    supports_rep_grad: ClassVar[bool] = False
    batches_per_step: ClassVar[int] = 1
    wants_post_step_losses: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset()
    step_context: StepContext | None = None  # the current step's context, during `backward` only
    # attributes (beyond parameters/buffers) saved in state_dict via extra state
    _state_attrs: ClassVar[tuple[str, ...]] = ()
    # attributes holding the method's own torch optimizers, whose state rides along in the checkpoint
    _optimizer_attrs: ClassVar[tuple[str, ...]] = ()
    # how the trainer reduces a diagnostic over an epoch: "mean" (default), "sum" (per-step counts)
    # or "last" (running values). `solver_failures` is the number of failed solves in one step.
    diagnostic_reductions: ClassVar[dict[str, str]] = {
        "solver_failures": "sum", "solver_inaccurate": "sum", "solver_failures_total": "last"}
    # how `epoch_mean_losses` averages the steps of an epoch: "step" (plain mean of step losses,
    # nash-mtl/IGB4MTL) or "batch" (weighted by the samples behind each loss, LibMTL
    # `AbsLoss._average_loss`, which its train_loss_buffer holds)
    epoch_loss_mean: ClassVar[str] = "step"
    # what each keyword argument accepts; subclasses add their own (merged along the MRO) and
    # `methods.create` checks every call against them (mtl/methods/_hparams.py)
    hparams: ClassVar[dict[str, Spec]] = {"loss_transform": Choice(*TRANSFORMS), "rep_grad": Bool(),
                                          "engine": Either(Choice(*MODES), Instance(GradientEngine))}
    # fewest tasks the method is defined for (e.g. 2 where it balances one task against others)
    min_tasks: ClassVar[int] = 1
    min_tasks_reason: ClassVar[str] = ""
    # takes the log of the raw losses itself (STCH, FAMO, GLS's geometric mean), whatever loss_transform
    logs_losses: ClassVar[bool] = False
    # a loss weighting (it combines the losses, one backward pass) rather than a gradient method
    weights_losses: ClassVar[bool] = False
    # Method.backward reads the loss signs itself (one host sync) unless its caller has checked them
    # with `loss_flags` (the trainer does, in the read it makes anyway for non-finite losses)
    checks_loss_values: bool = True

    def parts(self) -> tuple["Method", ...]:
        """The methods this one is made of (a combination's loss and gradient parts); none here."""
        return ()

    def __init__(
        self,
        num_tasks: int,
        *,
        loss_transform: str = "identity",
        rep_grad: bool = False,
        engine: str | GradientEngine = "loop",
    ):
        super().__init__()
        if rep_grad and not self.supports_rep_grad:
            raise InvalidCombination(
                f"method {self.name!r} does not support rep_grad=True (gradients w.r.t. the shared "
                f"representation); the reference implementation forbids it or silently leaves the "
                f"encoder untrained. Run it with rep_grad=false."
            )
        self.num_tasks = num_tasks
        self.loss_transform = loss_transform
        self.rep_grad = rep_grad
        self.engine = engine if isinstance(engine, GradientEngine) else GradientEngine(engine)
        self.epoch = 0
        self.step_count = 0
        self._loss_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self._loss_weight = torch.zeros(num_tasks, dtype=torch.float64)  # denominators of the epoch means
        self._loss_count = 0
        self._device = torch.device("cpu")  # where state tensors live; follows .to()/.cuda()
        self.last_batch_size: int | Sequence[int] | None = None

    # ---- public API -------------------------------------------------------------------------
    def backward(
        self,
        losses: torch.Tensor,
        shared_params: Sequence[torch.Tensor],
        task_params: Sequence[torch.Tensor] = (),
        *,
        rep: Representation | None = None,
        batch_size: int | Sequence[int] | None = None,
        ctx: StepContext | None = None,
    ) -> dict[str, Any]:
        """Fill `.grad` (accumulating, like `.backward()`) and return diagnostics. `batch_size`: the
        samples behind the losses (one number, or one per task); None counts the step as 1.
        `ctx`: the step's context with what `needs` declares (see `StepContext`)."""
        check_losses(self, losses)
        if self.rep_grad and rep is None:
            raise InvalidCombination(f"{self.name}: rep_grad=True needs `rep=Representation(...)` from the model")
        shared_params = [p for p in shared_params if p.requires_grad]
        task_params = [p for p in task_params if p.requires_grad]
        if self.engine.check_finite:  # fp16: a skipped step (NonFiniteGradients) leaves the counters as they were
            saved = (self.step_count, self._loss_sum.clone(), self._loss_weight.clone(), self._loss_count,
                     self.last_batch_size)
        self.record_losses(losses, batch_size)
        self.step_count += 1
        self.step_context = ctx
        try:
            return self._backward(transform_losses(losses, self.loss_transform), shared_params, task_params, rep)
        except NonFiniteGradients:
            (self.step_count, self._loss_sum, self._loss_weight, self._loss_count, self.last_batch_size) = saved
            raise
        finally:
            self.step_context = None

    def before_step(self, ctx: StepContext) -> None:
        """Called by the trainer before the step's forward pass, for methods whose `needs` include
        "passes" or "val_batch" (bilevel methods update their weights here: Auto-Lambda)."""

    def record_losses(self, losses: torch.Tensor, batch_size: int | Sequence[int] | None = None) -> None:
        """Add one step's raw losses to the epoch means (see `epoch_loss_mean`)."""
        raw = losses.detach()
        if self._loss_sum.device != raw.device:  # accumulate where the losses live: no per-step host sync
            self._loss_sum = self._loss_sum.to(raw.device)
            self._loss_weight = self._loss_weight.to(raw.device)
        self.last_batch_size = batch_size
        w: float | torch.Tensor = 1.0
        if self.epoch_loss_mean == "batch" and batch_size is not None:
            w = float(batch_size) if isinstance(batch_size, (int, float)) else \
                torch.as_tensor(batch_size, dtype=torch.float64, device=raw.device)
        self._loss_sum += w * (raw if raw.dim() == 1 else raw.mean(0)).double()
        self._loss_weight += w
        self._loss_count += 1

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before the first step of `epoch` (0-based)."""
        self.epoch = epoch
        self._loss_sum.zero_()
        self._loss_weight.zero_()
        self._loss_count = 0

    def on_epoch_end(self, epoch: int) -> None:
        """Called by the trainer after the last step of `epoch`."""

    def after_step(self, new_losses: torch.Tensor) -> None:
        """Losses on the same batch after the optimizer step (only if wants_post_step_losses)."""

    def active_tasks(self) -> list[int] | None:
        """Indices of the tasks this method trains (None: all). Selection and Δ of the run use only
        these, so a single-task run is judged on its own task."""
        return None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Method parameters the trainer's optimizer updates (UW log-variances, GradNorm weights, ...).
        Methods with their own optimizer (FAMO, IGBv2) return [] and step themselves."""
        return []

    def epoch_mean_losses(self) -> torch.Tensor:
        """Mean raw training loss per task over the steps of the current epoch so far (plain or
        batch-size weighted, see `epoch_loss_mean`)."""
        if self._loss_count == 0:
            raise MissingEpochStatistics(
                f"{self.name}: no training step seen in epoch {self.epoch}, so its mean training losses (which "
                f"{self.name} needs at the end of an epoch) are undefined; run at least one step per epoch "
                f"(trainer.max_steps_per_epoch >= 1 and a non-empty training set)")
        return (self._loss_sum / self._loss_weight).float()

    # ---- state ------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("epoch", "step_count", "_loss_sum", "_loss_weight", "_loss_count")}
        state.update({k: getattr(self, k) for k in self._state_attrs})
        state["engine_backward_passes"] = self.engine.backward_passes
        state["engine_chosen"] = self.engine.chosen
        state = _encode_numpy(state)
        for name in self._optimizer_attrs:  # a method's own optimizer (FAMO's, Auto-Lambda's, ...)
            state[name] = getattr(self, name).state_dict()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name in self._optimizer_attrs:  # torch moves an optimizer's state to its parameters' device
            getattr(self, name).load_state_dict(state.pop(name))
        # a private copy: in-place updates (EMA buffers, loss sums) must not leak into the caller's
        # state dict or into the module it came from, and the caller's dict must stay intact.
        # Checkpoints are loaded on the CPU: plain tensors move to this method's device, so a run
        # resumed on a GPU takes its next step there.
        state = _map_tensors(_decode_numpy(copy.deepcopy(dict(state))), lambda t: t.to(self._device))
        self.engine.backward_passes = state.pop("engine_backward_passes", 0)
        self.engine.chosen = state.pop("engine_chosen", self.engine.chosen)
        for k, v in state.items():
            setattr(self, k, v)

    def _apply(self, fn, recurse=True):
        """`.to()`, `.cuda()`, `.cpu()`: parameters and buffers as nn.Module does, plus the plain
        tensors of the extra state (EMA buffers, accumulators, loss histories)."""
        super()._apply(fn, recurse)
        self._device = fn(torch.empty(0, device=self._device)).device
        for k in ("_loss_sum", "_loss_weight", *self._state_attrs):
            value = getattr(self, k, None)
            if value is not None:
                setattr(self, k, _map_tensors(value, fn))
        return self

    # ---- to implement -----------------------------------------------------------------------
    def _backward(self, losses, shared_params, task_params, rep) -> dict[str, Any]:
        raise NotImplementedError


_NUMPY = "__numpy__"


def _encode_numpy(obj: Any) -> Any:
    """numpy arrays and scalars in nested containers as {"__numpy__": tensor, "scalar": bool}:
    checkpoints are read with torch.load(weights_only=True), which refuses numpy objects."""
    import numpy as np

    if isinstance(obj, (np.ndarray, np.generic)):
        return {_NUMPY: torch.from_numpy(np.array(obj, copy=True)), "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        return {k: _encode_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_encode_numpy(v) for v in obj)
    return obj


def _decode_numpy(obj: Any) -> Any:
    """The inverse of `_encode_numpy` (the same numpy types and values)."""
    if isinstance(obj, dict):
        if _NUMPY in obj and isinstance(obj[_NUMPY], torch.Tensor):
            arr = obj[_NUMPY].cpu().numpy().copy()
            return arr[()] if obj.get("scalar") else arr
        return {k: _decode_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_decode_numpy(v) for v in obj)
    return obj


def _map_tensors(obj: Any, fn) -> Any:
    """Apply `fn` to every tensor in nested dicts/lists/tuples (other values unchanged)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


class LossWeighting(Method):
    """Objective = sum over tasks of `task_terms(losses)`; one backward pass.

    Subclasses implement `weights` (detached per-task weights) or override `task_terms` when the
    objective carries learnable parameters (UW, IMTL-L). A gradient method can consume the
    per-task terms instead of raw losses (IGB + Nash-MTL, UW + PCGrad, ...).
    """

    weights_losses = True

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def task_terms(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (terms [T] whose sum is the objective, the weights to report)."""
        w = self.weights(losses.detach()).detach()
        return w * losses, w

    def _backward(self, losses, shared_params, task_params, rep):
        terms, w = self.task_terms(losses)
        terms.sum().backward()
        self.engine.backward_passes += 1
        return {"weights": w.detach()}


class GradientMethod(Method):
    """Replaces the shared gradient by an aggregate of the per-task gradients.

    head_grads: "plain" -> heads get the sum of their own task gradients (LibMTL mode='backward');
    "weighted" -> heads get sum_t w_t grad L_t (reference finishes with a weighted backward).
    """

    head_grads: ClassVar[str] = "plain"
    param_sizes: list[int] | None = None  # numel of each shared tensor in the current step (rows of G)

    def aggregate(self, G: torch.Tensor, losses: torch.Tensor) -> Aggregate:
        """G: [T, D] task gradients; losses: [T] (transformed, detached). Pure tensor math."""
        raise NotImplementedError

    def _backward(self, losses, shared_params, task_params, rep):
        if self.rep_grad:
            return self._backward_rep(losses, task_params, rep)
        self.param_sizes = [p.numel() for p in shared_params]  # for per-tensor methods (MTAdam, ...)
        grads = self.engine.jacobian(losses, shared_params, task_params)
        agg = self.aggregate(grads.shared, losses.detach())
        direction = agg.direction if agg.direction is not None else agg.weights @ grads.shared
        assign_flat_grad(shared_params, direction)
        self._assign_heads(task_params, grads, agg)
        return self._diagnostics(grads.shared, agg)

    def _backward_rep(self, losses, task_params, rep: Representation):
        """LibMTL rep-grad: weights from per-task representation gradients summed over the batch,
        then one backward of the weighted representation gradient through the encoder."""
        grads = self.engine.jacobian(losses, [rep.leaf], task_params)
        T = losses.shape[0]
        full = grads.shared.view(T, rep.leaf.shape[0], -1)
        G = full.sum(1)
        agg = self.aggregate(G, losses.detach())
        if agg.weights is None:
            raise InvalidCombination(f"{self.name}: rep-grad mode needs task weights, the method returned a direction")
        combined = torch.einsum("t,tbf->bf", agg.weights.to(full.dtype), full)
        rep.value.backward(combined.view_as(rep.value))
        self._assign_heads(task_params, grads, agg)
        return self._diagnostics(G, agg)

    def _assign_heads(self, task_params, grads: TaskGradients, agg: Aggregate) -> None:
        if self.head_grads == "weighted":
            accumulate_grads(task_params, grads.task_param_grads(agg.weights))
        else:
            accumulate_grads(task_params, grads.task_param_grads())

    @staticmethod
    def _diagnostics(G: torch.Tensor, agg: Aggregate) -> dict[str, Any]:
        out: dict[str, Any] = {"grad_norms": G.norm(dim=1).detach()}
        if agg.weights is not None:
            out["weights"] = agg.weights.detach()
        out.update(agg.info)
        return out
