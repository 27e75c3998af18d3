"""IGBv1 (improvable gap balancing v1), as IGB4MTL `ImprovableGapBalancing_v1`.

Until the end of epoch `base_epoch` (0-based, default 1) the weights are 1 (plain SI on log
losses). At the end of that epoch the mean raw training losses become L_base; afterwards, at
every step, w = T * softmax(L / L_base) from the current raw mini-batch losses (temperature 1, no
EMA), applied to the transformed (log) losses. IGB4MTL uses log(L); we use log(L + 1e-8).
"""
import torch

from mtl.methods._terms import RawLossesMixin
from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Int
from mtl.methods.registry import register


@register
class IGBv1(RawLossesMixin, LossWeighting):
    name = "igbv1"
    hparams = {"base_epoch": Int(ge=0)}
    _state_attrs = ("base_losses",)

    def __init__(self, num_tasks: int, *, base_epoch: int = 1, loss_transform: str = "log", **kw):
        super().__init__(num_tasks, loss_transform=loss_transform, **kw)
        self.base_epoch = int(base_epoch)
        self.base_losses: torch.Tensor | None = None

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        if epoch == self.base_epoch:
            self.base_losses = self.epoch_mean_losses()

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        if self.base_losses is None:
            return torch.ones_like(losses)
        raw = self.raw_losses.to(losses.dtype)
        return self.num_tasks * torch.softmax(raw / self.base_losses.to(raw.device, raw.dtype), dim=-1)
