"""Losses and epoch metrics of the dense-prediction benchmarks (NYUv2, Cityscapes).

Metrics follow protocol (A), LibMTL examples/nyu/utils.py, by default (`pooling="pixel"`):
- segmentation: one confusion matrix over every pixel of the split with label in [0, C);
  mIoU = mean over classes of TP / (TP + FP + FN), pixel accuracy = trace / total;
- depth: |p - g| and |p - g| / g averaged over all valid pixels (g != 0) of the split;
- normal: angle between the L2-normalised prediction and the ground truth over all valid pixels
  (g != 0 vector) of the split: mean, median, and share below 11.25, 22.5 and 30 degrees.
`pooling="batch"` is protocol (B) (nash-mtl / FAMO utils.py): depth and normal statistics are
computed per batch and the per-batch values averaged without weights (so the "median" is a mean
of per-batch medians). Segmentation is pooled in both protocols.

Reported units match the DB-MTL tables: mIoU, PAcc and the three "within" shares in %, depth errors
raw, angles in degrees.

Deviation: a class absent from both prediction and ground truth of the whole split has an
undefined IoU (0/0); LibMTL's mean then becomes NaN. We average over the defined classes
(identical whenever every class occurs, as in the real test sets; only tiny fixtures differ).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

POOLINGS = ("pixel", "batch")
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
NORMAL_METRICS = ("Mean", "MED", "Within11.25", "Within22.5", "Within30")


# ---- losses (LibMTL examples/nyu/utils.py) ---------------------------------------------------
def segmentation_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over pixels whose label is not -1."""
    return F.cross_entropy(logits, label.long(), ignore_index=-1)


def _valid_count(mask: torch.Tensor) -> torch.Tensor:
    # A batch without any valid pixel carries no supervision: loss 0 instead of 0/0.
    return mask.sum().clamp_min(1)


def depth_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L1 averaged over valid pixels (gt != 0). pred, gt: [B, 1, H, W]."""
    mask = (gt != 0).to(pred.dtype)
    return ((pred - gt).abs() * mask).sum() / _valid_count(mask)


def normalize(pred: torch.Tensor) -> torch.Tensor:
    return pred / pred.norm(p=2, dim=1, keepdim=True)


def valid_normals(gt: torch.Tensor) -> torch.Tensor:
    """[B, H, W] mask of valid normals. Both reference code bases test `gt.sum(1) != 0`, which
    for unit vectors is the all-zero test (a unit vector with components summing exactly to 0
    would also count as invalid there, and does here)."""
    return gt.sum(1) != 0


def normal_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine between normalised prediction and gt over valid pixels (gt != 0 vector)."""
    mask = valid_normals(gt).unsqueeze(1).to(pred.dtype)
    return 1 - (normalize(pred) * gt * mask).sum() / _valid_count(mask)


# ---- metrics ---------------------------------------------------------------------------------
class SegmentationMeter:
    """Epoch-pooled confusion matrix -> mIoU and pixel accuracy (in %)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, logits: torch.Tensor, label: torch.Tensor) -> None:
        pred = logits.argmax(1).flatten().cpu()
        gt = label.long().flatten().cpu()
        keep = (gt >= 0) & (gt < self.num_classes)
        idx = self.num_classes * gt[keep] + pred[keep]
        self.conf += torch.bincount(idx, minlength=self.num_classes ** 2).view(self.num_classes, -1)

    def compute(self) -> dict[str, float]:
        h = self.conf.double()
        tp = h.diag()
        union = h.sum(0) + h.sum(1) - tp
        iou = tp[union > 0] / union[union > 0]
        total = h.sum()
        return {
            "mIoU": 100.0 * float(iou.mean()) if iou.numel() else float("nan"),
            "PAcc": 100.0 * float(tp.sum() / total) if total > 0 else float("nan"),
        }


class DepthMeter:
    """Absolute and relative depth error over valid pixels (raw units)."""

    def __init__(self, pooling: str = "pixel"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.abs_sum = 0.0
        self.rel_sum = 0.0
        self.count = 0
        self.batch_abs: list[float] = []
        self.batch_rel: list[float] = []

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        mask = gt != 0
        p, g = pred[mask].double(), gt[mask].double()
        if g.numel() == 0:
            return
        err = (p - g).abs()
        if self.pooling == "pixel":
            self.abs_sum += float(err.sum())
            self.rel_sum += float((err / g).sum())
            self.count += g.numel()
        else:
            self.batch_abs.append(float(err.mean()))
            self.batch_rel.append(float((err / g).mean()))

    def compute(self) -> dict[str, float]:
        if self.pooling == "pixel":
            if self.count == 0:
                return {"AErr": float("nan"), "RErr": float("nan")}
            return {"AErr": self.abs_sum / self.count, "RErr": self.rel_sum / self.count}
        return {"AErr": float(np.mean(self.batch_abs)) if self.batch_abs else float("nan"),
                "RErr": float(np.mean(self.batch_rel)) if self.batch_rel else float("nan")}


def angle_errors(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Angles in degrees between normalised `pred` and `gt` at valid pixels (gt != 0 vector)."""
    mask = valid_normals(gt)
    cos = (normalize(pred) * gt).sum(1)[mask].clamp(-1, 1)
    return np.degrees(torch.acos(cos).detach().cpu().numpy())


def _angle_stats(err: np.ndarray) -> list[float]:
    return [float(np.mean(err)), float(np.median(err))] + [
        100.0 * float(np.mean(err < t)) for t in ANGLE_THRESHOLDS]


class NormalMeter:
    """Angle-error statistics; `pixel` pools every valid pixel of the split (exact median)."""

    def __init__(self, pooling: str = "pixel"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.errors: list[np.ndarray] = []
        self.batch_stats: list[list[float]] = []

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        err = angle_errors(pred, gt)
        if err.size == 0:
            return
        if self.pooling == "pixel":
            self.errors.append(err.astype(np.float32))
        else:
            self.batch_stats.append(_angle_stats(err))

    def compute(self) -> dict[str, float]:
        if self.pooling == "pixel":
            values = _angle_stats(np.concatenate(self.errors)) if self.errors else [float("nan")] * 5
        else:
            values = list(np.mean(self.batch_stats, axis=0)) if self.batch_stats else [float("nan")] * 5
        return dict(zip(NORMAL_METRICS, (float(v) for v in values)))
