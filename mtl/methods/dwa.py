"""DWA (dynamic weight average), epoch-level as in LibMTL weighting/DWA.py and MTAN.

From epoch 2 (0-based): w = T * softmax((Lbar_{e-1} / Lbar_{e-2}) / temperature), where Lbar_e is
the mean raw training loss of epoch e weighted by batch size (LibMTL
`AbsLoss._average_loss`; recorded at `on_epoch_end`); before that all weights are 1.
nash-mtl/IGB use an iteration-window variant instead; it is not reproduced here.
"""
import torch

from mtl.errors import MissingEpochStatistics
from mtl.methods.base import LossWeighting
from mtl.methods._hparams import Real
from mtl.methods.registry import register


@register
class DWA(LossWeighting):
    name = "dwa"
    hparams = {"temperature": Real(gt=0)}
    _state_attrs = ("loss_history",)
    epoch_loss_mean = "batch"  # LibMTL train_loss_buffer: batch-size weighted epoch means

    def __init__(self, num_tasks: int, *, temperature: float = 2.0, **kw):
        super().__init__(num_tasks, **kw)
        self.temperature = float(temperature)
        self.loss_history: dict[int, torch.Tensor] = {}  # epoch -> mean raw training loss [T]

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        self.loss_history[epoch] = self.epoch_mean_losses()

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        e = self.epoch
        if e <= 1:
            return torch.ones_like(losses)
        if e - 1 not in self.loss_history or e - 2 not in self.loss_history:
            raise MissingEpochStatistics(
                f"dwa: epoch {e} needs the mean losses of epochs {e - 2} and {e - 1}; recorded: "
                f"{sorted(self.loss_history)}; call on_epoch_start(e)/on_epoch_end(e) around every epoch "
                f"with at least one step (a checkpoint from another method or version lacks them: start over "
                f"with run.force=true)")
        ratio = (self.loss_history[e - 1] / self.loss_history[e - 2]).to(losses.device, losses.dtype)
        return self.num_tasks * torch.softmax(ratio / self.temperature, dim=-1)
