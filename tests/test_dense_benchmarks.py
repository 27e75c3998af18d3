"""NYUv2 (DeepLabV3+, SegNet-MTAN) and Cityscapes benchmarks: models, parameter splits, and two
training steps + evaluation through the real configs on tiny fixtures.

CPU tests shrink the networks through config keys (tiny ResNet, narrow ASPP / SegNet filters);
the published widths are checked structurally (dilation, parameter counts) and in `slow` tests.
"""
import json

import pytest
import torch

from mtl.datasets import nyuv2
from mtl.models.base import HPS, count_parameters
from mtl.models.cross_stitch import CrossStitch
from mtl.models.deeplab import DeepLabHead
from mtl.models.mtan import MTAN
from mtl.models.resnet import ResNetEncoder, WeightsUnavailable, imagenet_state_dict
from mtl.models.segnet_mtan import SegNetMTAN
from mtl.benchmarks.dense import build_model
from mtl.errors import InvalidCombination

NYU_OUT = {"segmentation": 13, "depth": 1, "normal": 3}


# ---- models -----------------------------------------------------------------------------------
def test_dilated_resnet50_has_output_stride_8_like_libmtl():
    e = ResNetEncoder("resnet50", dilated=True)
    # layer3: stride removed, dilation 1 in the first block's 3x3 and 2 after; layer4: 2 then 4
    assert e.layer3[0].conv2.stride == (1, 1) and e.layer3[0].conv2.dilation == (1, 1)
    assert e.layer3[1].conv2.dilation == (2, 2) and e.layer4[0].conv2.dilation == (2, 2)
    assert e.layer4[1].conv2.dilation == (4, 4) and e.layer4[0].downsample[0].stride == (1, 1)
    assert e.layer2[0].conv2.stride == (2, 2)
    assert e.feature_dim == 2048 and e.channels == [256, 512, 1024, 2048]
    assert count_parameters(list(e.parameters())) == 23_508_032  # ResNet-50 without fc


def test_pretrained_weights_offline_error_names_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision

    def offline(self, *a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailable) as err:
        imagenet_state_dict("resnet50")
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in msg
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in msg and "pretrained=false" in msg


def test_deeplab_head_upsamples_to_input_size():
    head = DeepLabHead(64, 13, out_size=(32, 48), mid_channels=8).eval()
    assert head(torch.randn(2, 64, 4, 6)).shape == (2, 13, 32, 48)
    full = DeepLabHead(2048, 13)
    # ASPP 1x1 + 3 atrous 3x3 + pooling branch, projection, 3x3, 1x1 classifier (LibMTL widths)
    expected = (2048 * 256 * (1 + 27 + 1) + 5 * 256 * 256 + 256 * 256 * 9 + 256 * 13 + 13
                + 7 * 2 * 256)  # 7 BatchNorms
    assert count_parameters(list(full.parameters())) == expected


def test_segnet_mtan_parameter_count_and_split():
    m = SegNetMTAN(NYU_OUT)
    total = count_parameters(list(m.parameters()))
    assert total == 44_229_073  # SegNet-MTAN, NYUv2 (MTAN paper: 44.229M)
    shared = [n for n, _ in m.named_parameters() if "pred" not in n]
    assert any(n.startswith("encoder_att.normal") for n in shared)  # attention counts as shared
    assert count_parameters(m.shared_parameters()) + count_parameters(m.task_parameters()) == total
    assert all("pred" in n for n, p in m.named_parameters() if any(p is q for q in m.task_parameters()))


def test_segnet_mtan_forward_shapes_and_unit_normals():
    m = SegNetMTAN(NYU_OUT, filters=(4, 8, 8, 16, 16)).eval()
    out, rep = m(torch.randn(2, 3, 32, 64))
    assert rep is None and out["segmentation"].shape == (2, 13, 32, 64)
    assert torch.allclose(out["normal"].norm(dim=1), torch.ones(2, 32, 64), atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 32"):
        m(torch.randn(1, 3, 32, 48))
    with pytest.raises(InvalidCombination):
        m(torch.randn(1, 3, 32, 64), rep_grad=True)


def test_mtan_has_per_task_attention_and_libmtl_split():
    m = build_model("mtan", NYU_OUT, (32, 64), backbone="tiny", dilated=False, pretrained=False, head_channels=8)
    assert isinstance(m, MTAN)
    a, b = m.attention["segmentation"][1], m.attention["depth"][1]
    assert a is not b and a[0].weight.data_ptr() != b[0].weight.data_ptr()
    assert {id(p) for p in m.shared_parameters()} == {id(p) for p in m.encoder.parameters()}
    all_ids = {id(p) for p in m.parameters()}
    assert {id(p) for p in m.shared_parameters() + m.task_parameters()} == all_ids
    out, _ = m.eval()(torch.randn(2, 3, 32, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "segmentation": (2, 13, 32, 64), "depth": (2, 1, 32, 64), "normal": (2, 3, 32, 64)}
    # tasks really differ: the attention masks are not shared
    assert not torch.allclose(m.attention["segmentation"][0](torch.randn(1, 8, 4, 4)),
                              m.attention["depth"][0](torch.randn(1, 8, 4, 4)))
    with pytest.raises(InvalidCombination):
        m(torch.randn(1, 3, 32, 64), rep_grad=True)


def test_cross_stitch_units_start_at_one_and_are_shared():
    m = build_model("cross_stitch", NYU_OUT, (32, 64), backbone="tiny", dilated=False, pretrained=False,
                    head_channels=8)
    assert isinstance(m, CrossStitch)
    assert torch.equal(m.cross_unit.data, torch.ones(4, 3, 3))
    shared = {id(p) for p in m.shared_parameters()}
    assert id(m.cross_unit) in shared and len(m.encoders) == 3
    assert not shared & {id(p) for p in m.task_parameters()}
    x = torch.randn(2, 3, 32, 64)
    out, _ = m.eval()(x)
    loss = out["depth"].sum()
    loss.backward()
    assert m.cross_unit.grad[:3].abs().sum() > 0  # the units mix the task streams


def test_hps_rep_grad_splits_the_encoder_output():
    m = build_model("hps", {"depth": 1}, (32, 64), backbone="tiny", dilated=False, pretrained=False,
                    head_channels=8)
    assert isinstance(m, HPS) and m.supports_rep_grad
    out, rep = m(torch.randn(2, 3, 32, 64), rep_grad=True)
    assert rep is not None and rep.leaf.shape == (2, 64, 1, 2)


@pytest.mark.slow
def test_published_parameter_counts():
    counts = {}
    for arch in ("hps", "mtan", "cross_stitch"):
        m = build_model(arch, NYU_OUT, (288, 384), pretrained=False)
        counts[arch] = (count_parameters(m.shared_parameters()), count_parameters(list(m.parameters())))
    assert counts["hps"] == (23_508_032, 71_888_721)
    assert counts["mtan"][0] == 23_508_032 and counts["mtan"][1] == 92_347_921
    assert counts["cross_stitch"][0] == 3 * 23_508_032 + 36


@pytest.mark.slow
def test_dilated_deeplab_full_resolution_shapes():
    m = build_model("hps", NYU_OUT, (288, 384), pretrained=False).eval()
    with torch.no_grad():
        rep = m.encoder(torch.randn(1, 3, 288, 384))
        out, _ = m(torch.randn(1, 3, 288, 384))
    assert rep.shape == (1, 2048, 36, 48) and out["normal"].shape == (1, 3, 288, 384)


# ---- benchmarks through the runner ----------------------------------------------------------
def fixture_overrides(bench, tiny, arch=None):
    out = [*tiny(bench), "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "run.checkpoint=false"]
    if arch is not None:
        out.append(f"benchmark.build.arch={arch}")
    return out


EXPECTED = {
    "nyuv2": {"segmentation": ["mIoU", "PAcc"], "depth": ["AErr", "RErr"],
              "normal": ["Mean", "MED", "Within11.25", "Within22.5", "Within30"]},
    "cityscapes": {"segmentation": ["mIoU", "PAcc"], "depth": ["AErr", "RErr"]},
}


def check_summary(run_dir, bench):
    s = json.loads((run_dir / "summary.json").read_text())
    want = EXPECTED["cityscapes" if bench == "cityscapes" else "nyuv2"]
    assert {t: sorted(m) for t, m in s["metrics"].items()} == {t: sorted(m) for t, m in want.items()}
    values = [v for m in s["metrics"].values() for v in m.values()]
    assert all(v == v and abs(v) < float("inf") for v in values)
    assert 0 <= s["metrics"]["segmentation"]["PAcc"] <= 100
    assert s["steps"] == 2 and s["selection"] == "best_test"
    assert set(s["reported"]) == {"best_test", "last10"}
    return s


@pytest.mark.parametrize("bench", ["nyuv2", "nyuv2_segnet", "cityscapes"])
@pytest.mark.parametrize("method", ["ew", "db_mtl"])
def test_benchmark_trains_two_steps_and_evaluates(bench, method, tiny, train):
    s = check_summary(train(fixture_overrides(bench, tiny) + [f"method={method}"]), bench)
    if method == "db_mtl":
        assert s["backward_passes"] == 2 * (3 if bench.startswith("nyuv2") else 2)  # T per step


@pytest.mark.parametrize("arch", ["mtan", "cross_stitch"])
def test_nyuv2_architectures_train_with_a_gradient_method(arch, tiny, train):
    check_summary(train(fixture_overrides("nyuv2", tiny, arch) + ["method=db_mtl"]), "nyuv2")


def test_rep_grad_with_per_task_representation_is_refused(tiny, train):
    with pytest.raises(InvalidCombination):
        train(fixture_overrides("nyuv2_segnet", tiny) + ["method=db_mtl_rep"])


def test_batch_pooling_option(tiny, train):
    over = fixture_overrides("nyuv2_segnet", tiny) + ["benchmark.build.pooling=batch", "method=ew"]
    check_summary(train(over), "nyuv2_segnet")


def test_parameter_counts_reported_by_benchmark(tmp_path):
    from mtl.benchmarks.nyuv2 import build

    b = build(root=str(nyuv2.write_fixture(tmp_path, height=32, width=64)), arch="segnet_mtan",
              segnet_filters=[4, 8, 8, 16, 16], image_size=None, split_sizes=None, num_workers=0)
    c = b.parameter_counts()
    assert c["shared"] + c["task"] == c["total"] == count_parameters(list(b.model.parameters()))
