"""NYUv2 / Cityscapes loaders on fixtures in the real .npy layout: round trip, validation errors,
augmentation properties, missing-data message, download module offline behaviour."""
import io
import urllib.error
import zipfile
from contextlib import redirect_stderr

import numpy as np
import pytest
import torch

from mtl.datasets import cityscapes, download, fixtures, nyuv2
from mtl.datasets.dense import DatasetFormatError, hflip, random_scale_crop
from mtl.errors import DatasetNotFound

H, W = 16, 24


@pytest.fixture
def nyu(tmp_path):
    return nyuv2.write_fixture(tmp_path / "nyuv2", n_train=3, n_val=2, height=H, width=W)


def test_fixture_round_trip(nyu):
    ds = nyuv2.NYUv2(nyu, "train")
    assert len(ds) == 3 and len(nyuv2.NYUv2(nyu, "val")) == 2
    image, t = ds[1]
    raw = {k: np.load(nyu / "train" / k / "1.npy") for k in ("image", "label", "depth", "normal")}
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(raw["image"]).permute(2, 0, 1))
    assert t["segmentation"].dtype == torch.int64
    assert torch.equal(t["segmentation"], torch.from_numpy(raw["label"]).long())
    assert torch.equal(t["depth"][0], torch.from_numpy(raw["depth"][..., 0]))
    assert torch.equal(t["normal"], torch.from_numpy(raw["normal"]).permute(2, 0, 1))
    # conventions exercised by the fixture: ignore labels, invalid depth, invalid normals
    assert (t["segmentation"] == -1).any() and (t["depth"] == 0).any()
    assert (t["normal"].abs().sum(0) == 0).any()
    assert nyuv2.LAYOUT.verify(nyu, full=False) == {"train": 3, "val": 2}


def test_fixture_dispatcher_and_cityscapes_label_folders(tmp_path):
    for folder in ("label", "label_7"):
        root = fixtures.write_fixture("cityscapes", tmp_path / folder, n_train=2, n_val=1,
                                      height=H, width=W, label_folder=folder)
        assert (root / "train" / folder / "0.npy").exists()
        image, t = cityscapes.Cityscapes(root, "val")[0]
        assert set(t) == {"segmentation", "depth"} and image.shape == (3, H, W)
        assert int(t["segmentation"].max()) <= 6


def test_full_check_rejects_fixture_sizes(nyu):
    with pytest.raises(DatasetFormatError, match="795"):
        nyuv2.LAYOUT.verify(nyu, full=True)


@pytest.mark.parametrize("key,array,match", [
    ("depth", np.ones((H, W), np.float32), r"depth/0\.npy: shape \(16, 24\), expected HxWx1"),
    ("image", np.ones((H, W, 3), np.uint8), r"image/0\.npy: dtype uint8"),
    ("label", np.full((H, W), 13, np.float32), r"label/0\.npy: class ids span"),
    ("label", np.full((H, W), 0.5, np.float32), r"label/0\.npy: class ids are not integers"),
    ("normal", np.ones((H + 1, W, 3), np.float32), r"normal/0\.npy: spatial size"),
])
def test_validation_errors_name_the_file(nyu, key, array, match):
    np.save(nyu / "train" / key / "0.npy", array)
    ds = nyuv2.NYUv2(nyu, "train", image_size=(H, W))
    with pytest.raises(DatasetFormatError, match=match):
        ds[0]


def test_gap_in_numbering_is_an_error(nyu):
    (nyu / "train" / "depth" / "1.npy").rename(nyu / "train" / "depth" / "7.npy")
    with pytest.raises(DatasetFormatError, match="not numbered"):
        nyuv2.NYUv2(nyu, "train")


def test_missing_data_message(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        nyuv2.NYUv2(tmp_path / "nowhere", "train")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "train" / "image") in msg
    assert "make data-nyuv2" in msg and "NYUV2_ROOT" in msg
    with pytest.raises(DatasetNotFound, match=r"label or .*label_7.*make data-cityscapes"):
        root = tmp_path / "city"
        for k in ("image", "depth"):
            (root / "train" / k).mkdir(parents=True)
        cityscapes.Cityscapes(root, "train")


# ---- augmentation ---------------------------------------------------------------------------
def sample():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 12, 12, generator=g)
    label = torch.randint(-1, 13, (12, 12), generator=g).float()
    depth = torch.full((1, 12, 12), 3.0)
    depth[0, :, :2] = 0
    normal = torch.nn.functional.normalize(torch.randn(3, 12, 12, generator=g), dim=0)
    return image, label, depth, normal


def test_scale_one_crop_is_identity():
    s = sample()
    out = random_scale_crop(*s, scale=1.0, top=0, left=0)
    for a, b in zip(s, out):
        assert torch.allclose(a, b)


def test_scale_crop_divides_depth_and_keeps_label_values():
    image, label, depth, normal = sample()
    i2, l2, d2, n2 = random_scale_crop(image, label, depth, normal, scale=1.5, top=4, left=4)
    assert i2.shape == image.shape and l2.shape == label.shape and d2.shape == depth.shape
    assert set(d2.unique().tolist()) <= {0.0, 2.0}  # 3 / 1.5; invalid stays 0 (nearest)
    assert set(l2.unique().tolist()) <= set(label[4:12, 4:12].unique().tolist())
    # crop window 8x8 at (4,4): corners map exactly with align_corners bilinear
    assert torch.allclose(i2[:, 0, 0], image[:, 4, 4]) and torch.allclose(i2[:, -1, -1], image[:, 11, 11])


def test_flip_negates_normal_x():
    image, label, depth, normal = sample()
    i2, l2, d2, n2 = hflip(image, label, depth, normal)
    assert torch.equal(i2, image.flip(-1)) and torch.equal(l2, label.flip(-1))
    assert torch.equal(n2[0], -normal[0].flip(-1)) and torch.equal(n2[1:], normal[1:].flip(-1))
    assert torch.equal(normal, sample()[3])  # input untouched


def test_augmentation_depends_only_on_seed_and_index(nyu):
    ds = nyuv2.NYUv2(nyu, "train", augment=True)
    ds.aug_seed = 5
    a = ds[0]
    torch.manual_seed(123)  # the global RNG plays no part
    b = ds[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["depth"], b[1]["depth"])
    differs = []
    for seed in range(6, 16):
        ds.aug_seed = seed
        differs.append(not torch.equal(ds[0][0], a[0]))
    assert any(differs)


# ---- download module (scripts/download_data.py is its command line) ----------------------------
def test_download_offline_names_url_and_manual_steps(tmp_path, monkeypatch):
    mod = download

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mod.urllib.request, "urlopen", offline)
    err = io.StringIO()
    with redirect_stderr(err):
        rc = mod.main(["nyuv2", "--root", str(tmp_path / "nyu")])
    msg = err.getvalue()
    assert rc == 1
    assert "p2nn02wijg7peiy/nyuv2.zip" in msg and "86nssgwm6hm3vkb" in msg
    assert "Temporary failure" in msg and "--verify-only" in msg


def test_download_extracts_nested_archive_and_records_size(tmp_path, monkeypatch):
    mod = download
    src = cityscapes.write_fixture(tmp_path / "src" / "cityscapes2", n_train=2, n_val=1, height=H, width=W)
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in src.rglob("*.npy"):
            zf.write(p, p.relative_to(src.parent))
    source = mod.Source(archive.as_uri(), min_bytes=0)
    root = tmp_path / "data"
    info = mod.download_and_extract("cityscapes", [source], root, "layout")
    assert info["bytes"] == archive.stat().st_size and len(info["sha256"]) == 64
    assert cityscapes.LAYOUT.verify(root, full=False) == {"train": 2, "val": 1}
    bad = mod.Source(archive.as_uri(), min_bytes=0, sha256="0" * 64)
    with pytest.raises(mod.DownloadError, match="SHA-256"):
        mod.download_and_extract("cityscapes", [bad], tmp_path / "d2", "layout")


def test_verify_only_checks_published_sizes(tmp_path):
    mod = download
    root = nyuv2.write_fixture(tmp_path / "nyu", n_train=2, n_val=1, height=H, width=W)
    err = io.StringIO()
    with redirect_stderr(err):
        rc = mod.main(["nyuv2", "--root", str(root), "--verify-only"])
    assert rc == 1 and "795" in err.getvalue()
