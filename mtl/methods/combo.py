"""`combo`: a loss-weighting method feeding a gradient method, as IGB4MTL combines them.

The loss method's per-task terms (e.g. IGBv1's w_t log L_t) are handed to the gradient method as
if they were the task losses (IGB + PCGrad runs PCGrad on the gradients of w_t log L_t). The loss
method's own learnable parameters (UW's s, IMTL-L's scales) get the gradient of Σ_t α_t term_t, the
objective the gradient method backpropagates in IGB4MTL (`loss.backward()` of its weighted loss):
α = the gradient method's `objective_weights(info)` if it defines one (MGDA: T·sol, as nash-mtl),
else its reported `weights` (Nash-MTL, IMTL-G, ...), else 1 (methods that return a direction:
IGB4MTL's CAGrad backpropagates every term unweighted). Known deviation: IGB4MTL's PCGrad fills
only the network's gradients, so there the loss method's parameters are never trained; here they
get Σ_t term_t.

    method=combo method.loss.name=igbv1 method.grad.name=nash_mtl
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtl.errors import InvalidCombination
from mtl.methods._terms import loss_terms
from mtl.methods.base import LossWeighting, Method
from mtl.methods._hparams import Choice, MethodPart
from mtl.methods.registry import _REGISTRY, register


def _spec(cfg, role: str) -> tuple[str, dict[str, Any]]:
    if isinstance(cfg, str):
        return cfg, {}
    if not isinstance(cfg, Mapping) and not hasattr(cfg, "items"):
        raise TypeError(f"combo: `{role}` must be a name or a mapping with `name`, got {cfg!r}")
    spec = dict(cfg.items())  # its `name` is there: the declared spec (MethodPart) checked it
    return spec.pop("name"), spec


@register
class Combined(Method):
    name = "combo"
    hparams = {"loss": MethodPart(loss_weighting=True), "grad": MethodPart(set_by_parent=("engine", "rep_grad")),
               "loss_transform": Choice("identity", hint="set the loss transform on the parts instead "
                                                         "(method.loss.loss_transform=log)")}

    def __init__(self, num_tasks: int, *, loss="igbv1", grad="ew", loss_transform: str = "identity",
                 rep_grad: bool = False, engine="loop"):
        if loss_transform != "identity":
            raise InvalidCombination("combo: set the loss transform on the parts (method.loss.loss_transform), "
                                     "not on the combination")
        super().__init__(num_tasks, engine=engine)
        loss_name, loss_kw = _spec(loss, "loss")
        grad_name, grad_kw = _spec(grad, "grad")
        if not issubclass(_REGISTRY[loss_name], LossWeighting):
            raise InvalidCombination(f"combo: loss part {loss_name!r} is not a loss-weighting method")
        if loss_name == "combo" or grad_name == "combo":
            raise InvalidCombination("combo: parts cannot be combinations themselves")
        self.loss_method = _REGISTRY[loss_name](num_tasks=num_tasks, engine=self.engine, **loss_kw)
        self.grad_method = _REGISTRY[grad_name](num_tasks=num_tasks, engine=self.engine, rep_grad=rep_grad, **grad_kw)
        for part in (self.loss_method, self.grad_method):
            if part.batches_per_step != 1:
                raise InvalidCombination(f"combo: {part.name!r} consumes {part.batches_per_step} batches per step; "
                                         f"combinations take one")
        for part in (self.loss_method, self.grad_method):
            if part.needs:
                raise InvalidCombination(f"combo: {part.name!r} needs {sorted(part.needs)} (a step context); "
                                         f"combinations pass only the losses: run it on its own")
        if self.grad_method.wants_post_step_losses:
            raise InvalidCombination(f"combo: gradient part {grad_name!r} needs post-step losses; re-evaluating "
                                     f"the loss part's terms would advance its state twice per step")
        self.rep_grad = bool(rep_grad)
        self.supports_rep_grad = self.grad_method.supports_rep_grad
        self.wants_post_step_losses = self.loss_method.wants_post_step_losses

    def parts(self):
        return (self.loss_method, self.grad_method)

    @property
    def checks_loss_values(self) -> bool:
        return self.loss_method.checks_loss_values

    @checks_loss_values.setter
    def checks_loss_values(self, value: bool) -> None:
        if hasattr(self, "grad_method"):  # the parts check what the combination's caller did not
            self.loss_method.checks_loss_values = self.grad_method.checks_loss_values = bool(value)

    def _backward(self, losses, shared_params, task_params, rep):
        terms, w = loss_terms(self.loss_method, losses, self.last_batch_size)
        own = [p for p in self.loss_method.trainable_parameters() if p.requires_grad]
        if own:
            # d term_t / d own for every t, taken now: α is known only after the gradient method ran,
            # and its last backward may free the graph
            jac = [torch.autograd.grad(terms[t], own, retain_graph=True, allow_unused=True)
                   for t in range(self.num_tasks)]
            before = [None if p.grad is None else p.grad.clone() for p in own]
        info = self.grad_method.backward(terms, shared_params, task_params, rep=rep, batch_size=self.last_batch_size)
        if own:
            alpha = self._objective_weights(info, terms)
            for k, (p, b) in enumerate(zip(own, before)):
                g = torch.zeros_like(p)
                for t in range(self.num_tasks):
                    if jac[t][k] is not None:
                        g = g + alpha[t] * jac[t][k]
                p.grad = g if b is None else b + g
        out = {f"grad/{k}": v for k, v in info.items()}
        out["loss_weights"] = w.detach()
        if "weights" in info:
            out["weights"] = info["weights"]
        return out

    def _objective_weights(self, info: dict[str, Any], terms: torch.Tensor) -> torch.Tensor:
        """α of Σ_t α_t term_t, the gradient method's weighted objective (see the module docstring)."""
        fn = getattr(self.grad_method, "objective_weights", None)
        alpha = fn(info) if fn is not None else info.get("weights")
        if alpha is None:
            return torch.ones_like(terms.detach())
        return torch.as_tensor(alpha).detach().to(terms.device, terms.dtype)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.loss_method.on_epoch_start(epoch)
        self.grad_method.on_epoch_start(epoch)

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        self.loss_method.on_epoch_end(epoch)
        self.grad_method.on_epoch_end(epoch)

    def after_step(self, new_losses: torch.Tensor) -> None:
        self.loss_method.after_step(new_losses)

    def trainable_parameters(self):
        return self.loss_method.trainable_parameters() + self.grad_method.trainable_parameters()
