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
# Every meter accumulates on the device of the predictions (no host sync per batch); `compute()`
# makes the one transfer of the split's statistics.
class SegmentationMeter:
    """Epoch-pooled confusion matrix -> mIoU and pixel accuracy (in %)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.conf: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, label: torch.Tensor) -> None:
        C = self.num_classes
        pred = logits.argmax(1).flatten()
        gt = label.long().flatten()
        # pixels outside [0, C) (ignore label -1) go to an overflow bin that is dropped
        keep = (gt >= 0) & (gt < C)
        idx = torch.where(keep, C * gt + pred, C * C)
        counts = torch.bincount(idx, minlength=C * C + 1)[: C * C].view(C, C)
        self.conf = counts if self.conf is None else self.conf + counts

    def compute(self) -> dict[str, float]:
        if self.conf is None:
            return {"mIoU": float("nan"), "PAcc": float("nan")}
        h = self.conf.cpu().double()
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
        self.sums: torch.Tensor | None = None  # [abs, rel, count] (pixel) pooled over the split
        self.batches: list[torch.Tensor] = []  # per-batch [abs mean, rel mean, count] (batch pooling)

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        # masked sums instead of boolean indexing: no data-dependent shapes, so no host sync
        mask = gt != 0
        p, g = pred.double(), gt.double()
        err = (p - g).abs() * mask
        rel = err / torch.where(mask, g, torch.ones_like(g))
        n = mask.sum().double()
        row = torch.stack([err.sum(), rel.sum(), n])
        if self.pooling == "pixel":
            self.sums = row if self.sums is None else self.sums + row
        else:  # a batch without valid pixels (n = 0) is skipped in compute()
            self.batches.append(torch.stack([row[0] / n.clamp_min(1), row[1] / n.clamp_min(1), n]))

    def compute(self) -> dict[str, float]:
        nan = {"AErr": float("nan"), "RErr": float("nan")}
        if self.pooling == "pixel":
            if self.sums is None:
                return nan
            abs_sum, rel_sum, count = self.sums.tolist()
            return nan if count == 0 else {"AErr": abs_sum / count, "RErr": rel_sum / count}
        if not self.batches:
            return nan
        rows = torch.stack(self.batches).cpu()
        rows = rows[rows[:, 2] > 0]
        if not len(rows):
            return nan
        return {"AErr": float(np.mean(rows[:, 0].numpy())), "RErr": float(np.mean(rows[:, 1].numpy()))}


def angle_errors(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Angles in degrees (float32, on the device) between normalised `pred` and `gt`, flattened over
    every pixel; invalid pixels (gt = 0 vector) are +inf, which sorts last and is never below a
    threshold (no boolean indexing: no host sync)."""
    mask = valid_normals(gt)
    cos = (normalize(pred.float()) * gt).sum(1).clamp(-1, 1)
    deg = torch.rad2deg(torch.acos(cos))
    return torch.where(mask, deg, torch.full_like(deg, float("inf"))).flatten()


def _angle_stats(err: torch.Tensor) -> list[float]:
    """[mean, exact median (numpy's: mean of the two middle values for an even count), share below
    each threshold in %] over the finite entries of `err` (see angle_errors); NaNs if none."""
    valid = torch.isfinite(err)
    n = int(valid.sum())
    if n == 0:
        return [float("nan")] * 5
    lo = torch.kthvalue(err, (n + 1) // 2).values
    hi = torch.kthvalue(err, n // 2 + 1).values if n % 2 == 0 else lo
    mean = torch.where(valid, err.double(), torch.zeros((), dtype=torch.float64, device=err.device)).sum() / n
    shares = [100.0 * (err < t).double().sum() / n for t in ANGLE_THRESHOLDS]
    return torch.stack([mean, (lo.double() + hi.double()) / 2, *shares]).tolist()


class NormalMeter:
    """Angle-error statistics; `pixel` pools every valid pixel of the split (exact median)."""

    def __init__(self, pooling: str = "pixel"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.errors: list[torch.Tensor] = []  # per batch, on the device; reduced in compute()

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        self.errors.append(angle_errors(pred, gt))

    def compute(self) -> dict[str, float]:
        if self.pooling == "pixel":
            values = _angle_stats(torch.cat(self.errors)) if self.errors else [float("nan")] * 5
        else:  # nash-mtl: unweighted mean of per-batch statistics, batches without valid pixels skipped
            stats = [v for v in (_angle_stats(e) for e in self.errors) if v[0] == v[0]]
            values = list(np.mean(stats, axis=0)) if stats else [float("nan")] * 5
        return dict(zip(NORMAL_METRICS, (float(v) for v in values)))
