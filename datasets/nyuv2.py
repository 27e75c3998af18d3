"""NYUv2 in MTAN's pre-processed layout: 795 train / 654 test images at 288x384, 13 classes,
metric depth (0 = invalid) and surface normals (zero vector = invalid).

Source: MTAN (lorenmt/mtan README, Dropbox) as used by LibMTL examples/nyu and nash-mtl.
`python scripts/download_data.py nyuv2` (or `make data-nyuv2`) installs it.
"""
from __future__ import annotations

from pathlib import Path

from mtl.datasets.dense import DenseDataset, DenseLayout, Modality, write_dense_fixture

LAYOUT = DenseLayout(
    name="nyuv2",
    title="NYUv2 (MTAN pre-processed)",
    modalities={
        "image": Modality(("image",), 3, "float"),
        "segmentation": Modality(("label",), None, "label"),
        "depth": Modality(("depth",), 1, "float"),
        "normal": Modality(("normal",), 3, "float"),
    },
    num_classes=13,
    image_size=(288, 384),
    split_sizes={"train": 795, "val": 654},
    make_target="make data-nyuv2",
    env_var="NYUV2_ROOT",
    default_root="data/nyuv2",
)


def NYUv2(root: str | Path, split: str, **kw) -> DenseDataset:
    """split: "train" or "val" (the test set)."""
    return DenseDataset(LAYOUT, root, split, **kw)


def write_fixture(root: str | Path, n_train: int = 4, n_val: int = 2, height: int = 32, width: int = 48,
                  **kw) -> Path:
    """A tiny NYUv2 in the real on-disk layout."""
    return write_dense_fixture(LAYOUT, root, n_train, n_val, height, width, **kw)
