"""Dense-prediction losses and metrics on hand-computed arrays; Δp of the paper's own rows."""
import math

import pytest
import torch
import torch.nn.functional as F

from mtl.benchmarks import dense_metrics as dm
from mtl.benchmarks.dense import TASK_SPECS
from mtl.scoring.delta import delta_m, delta_p


def onehot_logits(pred, C):
    """[B, C, H, W] logits whose argmax is `pred` ([B, H, W])."""
    return F.one_hot(torch.tensor(pred), C).permute(0, 3, 1, 2).float()


def test_segmentation_confusion_matrix_by_hand():
    # gt 0,0,1,ignore ; pred 0,1,1,0 -> class 0: TP 1, union 2; class 1: TP 1, union 2
    m = dm.SegmentationMeter(2)
    m.update(onehot_logits([[[0, 1], [1, 0]]], 2), torch.tensor([[[0, 0], [1, -1]]]))
    out = m.compute()
    assert out["mIoU"] == pytest.approx(50.0)
    assert out["PAcc"] == pytest.approx(100 * 2 / 3)


def test_segmentation_is_pooled_over_batches():
    # batch 1: all correct class 0 (2 px); batch 2: gt 1 predicted 0 (1 px)
    m = dm.SegmentationMeter(2)
    m.update(onehot_logits([[[0, 0]]], 2), torch.tensor([[[0, 0]]]))
    m.update(onehot_logits([[[0]]], 2), torch.tensor([[[1]]]))
    out = m.compute()
    # pooled: class 0 TP 2, union 3; class 1 TP 0, union 1 -> mIoU = (2/3 + 0) / 2
    assert out["mIoU"] == pytest.approx(100 * (2 / 3) / 2)
    assert out["PAcc"] == pytest.approx(100 * 2 / 3)


def test_segmentation_class_absent_everywhere_is_skipped():
    m = dm.SegmentationMeter(3)  # class 2 never occurs in gt or prediction
    m.update(onehot_logits([[[0, 1], [1, 0]]], 3), torch.tensor([[[0, 0], [1, -1]]]))
    assert m.compute()["mIoU"] == pytest.approx(50.0)


def depth_batches():
    b1 = (torch.tensor([1.0, 2.0]).view(1, 1, 1, 2), torch.tensor([2.0, 0.0]).view(1, 1, 1, 2))
    b2 = (torch.tensor([1.0, 1.0, 1.0]).view(1, 1, 1, 3), torch.tensor([2.0, 2.0, 4.0]).view(1, 1, 1, 3))
    return [b1, b2]


def test_depth_pixel_pooled():
    m = dm.DepthMeter("pixel")
    for p, g in depth_batches():
        m.update(p, g)
    out = m.compute()
    assert out["AErr"] == pytest.approx((1 + 1 + 1 + 3) / 4)
    assert out["RErr"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.75) / 4)


def test_depth_batch_averaged_protocol_b():
    m = dm.DepthMeter("batch")
    for p, g in depth_batches():
        m.update(p, g)
    out = m.compute()
    assert out["AErr"] == pytest.approx((1 + 5 / 3) / 2)
    assert out["RErr"] == pytest.approx((0.5 + 1.75 / 3) / 2)


def normals_at(angles_deg, scale=2.0):
    """Predictions in the xy-plane at the given angles from gt = +x (unnormalised, x`scale`)."""
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    pred = torch.stack([a.cos(), a.sin(), torch.zeros_like(a)]) * scale  # [3, N]
    gt = torch.zeros_like(pred)
    gt[0] = 1
    return pred.view(1, 3, 1, -1).float(), gt.view(1, 3, 1, -1).float()


def test_normal_pixel_pooled_with_global_median():
    m = dm.NormalMeter("pixel")
    p1, g1 = normals_at([0, 10])
    p2, g2 = normals_at([20, 45, 90])
    g2[..., -1] = 0  # the 90-degree pixel is invalid (zero normal) and ignored
    m.update(p1, g1)
    m.update(p2, g2)
    out = m.compute()
    assert out["Mean"] == pytest.approx(18.75, abs=1e-3)
    assert out["MED"] == pytest.approx(15.0, abs=1e-3)
    assert out["Within11.25"] == pytest.approx(50.0)
    assert out["Within22.5"] == pytest.approx(75.0)
    assert out["Within30"] == pytest.approx(75.0)


def test_normal_batch_averaged_median_is_mean_of_medians():
    m = dm.NormalMeter("batch")
    for angles in ([0, 10], [20, 45]):
        m.update(*normals_at(angles))
    out = m.compute()
    assert out["Mean"] == pytest.approx(18.75, abs=1e-3)
    assert out["MED"] == pytest.approx((5 + 32.5) / 2, abs=1e-3)
    assert out["Within11.25"] == pytest.approx(50.0)
    assert out["Within22.5"] == pytest.approx(75.0)


def test_segmentation_loss_ignores_minus_one():
    logits = torch.tensor([[[[2.0, 0.0, 5.0]], [[0.0, 1.0, -5.0]]]])  # [1, 2, 1, 3]
    label = torch.tensor([[[0, 1, -1]]])
    expected = (-F.log_softmax(torch.tensor([2.0, 0.0]), 0)[0] - F.log_softmax(torch.tensor([0.0, 1.0]), 0)[1]) / 2
    assert dm.segmentation_loss(logits, label).item() == pytest.approx(expected.item(), rel=1e-6)


def test_depth_loss_masks_invalid():
    pred = torch.tensor([1.0, 5.0, 3.0]).view(1, 1, 1, 3)
    gt = torch.tensor([2.0, 0.0, 1.0]).view(1, 1, 1, 3)
    assert dm.depth_loss(pred, gt).item() == pytest.approx((1 + 2) / 2)


def test_normal_loss_is_one_minus_mean_cosine_over_valid():
    pred, gt = normals_at([0, 60, 90])
    gt[..., -1] = 0
    assert dm.normal_loss(pred, gt).item() == pytest.approx(1 - (1 + 0.5) / 2, abs=1e-6)


def test_unknown_pooling_rejected():
    with pytest.raises(ValueError, match="pooling"):
        dm.DepthMeter("median")


# ---- units: the paper's rows give the paper's Δp with our task specs -------------------------
NYU_STL = {"segmentation": {"mIoU": 53.50, "PAcc": 75.39}, "depth": {"AErr": 0.3926, "RErr": 0.1605},
           "normal": {"Mean": 21.99, "MED": 15.16, "Within11.25": 39.04, "Within22.5": 65.00, "Within30": 75.16}}
NYU_DBMTL = {"segmentation": {"mIoU": 53.92, "PAcc": 75.60}, "depth": {"AErr": 0.3768, "RErr": 0.1557},
             "normal": {"Mean": 21.97, "MED": 15.37, "Within11.25": 38.43, "Within22.5": 64.81, "Within30": 75.24}}
SEG_STL = {"segmentation": {"mIoU": 38.30, "PAcc": 63.76}, "depth": {"AErr": 0.6754, "RErr": 0.2780},
           "normal": {"Mean": 25.01, "MED": 19.21, "Within11.25": 30.14, "Within22.5": 57.20, "Within30": 69.15}}
SEG_NASH = {"segmentation": {"mIoU": 40.13, "PAcc": 65.93}, "depth": {"AErr": 0.5261, "RErr": 0.2171},
            "normal": {"Mean": 25.26, "MED": 20.08, "Within11.25": 28.40, "Within22.5": 55.47, "Within30": 68.15}}
NYU_TASKS = [TASK_SPECS[t] for t in ("segmentation", "depth", "normal")]
CITY_TASKS = [TASK_SPECS[t] for t in ("segmentation", "depth")]


def test_table1_dbmtl_row_reproduces_its_delta_p():
    assert delta_p(NYU_DBMTL, NYU_STL, NYU_TASKS) == pytest.approx(1.15, abs=0.02)


def test_table6_nash_row_reproduces_delta_p_and_nash_delta_m():
    assert delta_p(SEG_NASH, SEG_STL, NYU_TASKS) == pytest.approx(7.65, abs=0.02)   # DB-MTL Table 6
    assert delta_m(SEG_NASH, SEG_STL, NYU_TASKS) == pytest.approx(-4.04, abs=0.02)  # Nash-MTL paper


def test_table2_ew_row_reproduces_its_delta_p():
    # Cityscapes AErr is printed to 3-4 significant digits, so recomputed rows agree with the
    # printed Δp only to ~0.1 (DB-MTL: 0.12 vs +0.20); EW agrees to 0.01.
    stl = {"segmentation": {"mIoU": 69.06, "PAcc": 91.54}, "depth": {"AErr": 0.01282, "RErr": 43.53}}
    row = {"segmentation": {"mIoU": 68.93, "PAcc": 91.58}, "depth": {"AErr": 0.01315, "RErr": 45.90}}
    assert delta_p(row, stl, CITY_TASKS) == pytest.approx(-2.05, abs=0.02)
