"""IGBv2 (improvable gap balancing v2): task weights from a soft actor-critic agent, as IGB4MTL
`ImprovableGapBalancing_v2`.

- state: the raw mini-batch loss vector; action: weights K * softmax(u) (see `_sac.py`);
- reward r_t = reward_scale * min_k (L_{t-1,k} - L_{t,k}) / L_base,k, stored as the transition
  (L_{t-1}, w_{t-1}, r_t, L_t) once L_base exists (mean raw loss of epoch `base_epoch`, as IGBv1);
- epochs < start_epoch (5): RLW-style weights K * softmax(randn); afterwards a stochastic action;
- from epoch `update_after` (3), at every step whose global index is a multiple of update_every
  (50): int(update_every * k / 2) SAC updates with batches of int(256 k / 2), k = 1 + |buffer|/size;
- objective sum_k w_k log L_k (loss_transform log).
IGB4MTL counts its schedule in steps (epoch * batches per epoch); we use the epoch counter, which
is the same when every epoch has the same number of steps. reward_scale: IGB's NYUv2 run uses
lr0 / lr_current; the trainer does not pass learning rates to methods, so that variant is not
reproduced (a custom loop may call `set_reward_scale`). QM9 in IGB4MTL effectively uses 1.0.
"""
import torch

from mtl.errors import InvalidValue
from mtl.methods._sac import SACAgent
from mtl.methods._terms import RawLossesMixin
from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Int, ListOf, Real
from mtl.methods.registry import register


@register
class IGBv2(RawLossesMixin, LossWeighting):
    name = "igbv2"
    hparams = {"base_epoch": Int(ge=0), "start_epoch": Int(ge=0), "update_after": Int(ge=1),
               "update_every": Int(ge=1), "batch_size": Int(ge=1), "buffer_size": Int(ge=1), "lr": Real(gt=0),
               "gamma": Real(ge=0, le=1), "tau": Real(ge=0, le=1), "hidden": ListOf(Int(ge=1)),
               "alpha": Real(gt=0),  # SAC entropy weight (its log is taken)
               "reward_scale": Real(gt=0)}
    _state_attrs = ("base_losses", "slot", "reward_scale", "transitions")

    def __init__(self, num_tasks: int, *, base_epoch: int = 1, start_epoch: int = 5, update_after: int = 3,
                 update_every: int = 50, batch_size: int = 256, buffer_size: int = 10_000, lr: float = 3e-4,
                 gamma: float = 0.99, tau: float = 0.005, hidden=(128, 128), alpha: float = 0.2,
                 reward_scale: float = 1.0, loss_transform: str = "log", **kw):
        super().__init__(num_tasks, loss_transform=loss_transform, **kw)
        if int(base_epoch) >= int(update_after):
            raise InvalidValue("method.base_epoch", f"igbv2 needs base_epoch ({base_epoch}) < update_after "
                               f"({update_after}), otherwise the agent trains on an empty replay buffer",
                               "lower method.base_epoch or raise method.update_after (defaults 1 and 3)")
        self.base_epoch, self.start_epoch = int(base_epoch), int(start_epoch)
        self.update_after, self.update_every = int(update_after), int(update_every)
        self.agent = SACAgent(num_tasks, num_tasks, lr=lr, gamma=gamma, tau=tau, hidden=hidden,
                              batch_size=batch_size, alpha=alpha, buffer_size=buffer_size)
        self.register_buffer("batch_loss", torch.zeros(2, num_tasks))
        self.register_buffer("batch_weight", torch.zeros(2, num_tasks))
        self.slot = 0
        self.base_losses: torch.Tensor | None = None
        self.reward_scale = float(reward_scale)
        self.transitions = 0

    def set_reward_scale(self, scale: float) -> None:
        self.reward_scale = float(scale)

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        if epoch == self.base_epoch:
            self.base_losses = self.epoch_mean_losses()

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        cur, prev = self.slot, (self.slot + 1) % 2
        step = self.step_count - 1  # IGB4MTL custom_step: steps taken before this one
        self.batch_loss[cur] = self.raw_losses.to(self.batch_loss)
        if self.base_losses is not None:
            drop = (self.batch_loss[prev] - self.batch_loss[cur]) / self.base_losses.to(self.batch_loss)
            reward = drop.min() * self.reward_scale
            self.agent.buffer.add(self.batch_loss[prev], self.batch_weight[prev], reward, self.batch_loss[cur])
            self.transitions += 1
        if self.epoch >= self.update_after and step % self.update_every == 0:
            k = 1 + self.agent.buffer.size / self.agent.buffer.max_size
            for _ in range(int(self.update_every * (k / 2))):
                self.agent.train_step(k)
        if self.epoch < self.start_epoch:
            w = self.num_tasks * torch.softmax(torch.randn(self.num_tasks), dim=-1)
        else:
            w = self.agent.select_action(self.batch_loss[cur], deterministic=False)
        w = w.to(self.batch_weight)
        self.batch_weight[cur] = w
        self.slot = prev
        return w.to(losses.device, losses.dtype)
