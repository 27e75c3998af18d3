"""Cityscapes in MTAN's 128x256 pre-processed layout ("cityscapes2"): 2975 train / 500 test
images, 7-class segmentation (-1 = ignore) and inverse depth (disparity scaled to about
[0, 0.49]; 0 = invalid). No normals.

LibMTL reads labels from `label/`; MTAN's archive and the nash-mtl/FAMO loaders use `label_7/`.
Both are accepted (`label/` first). Source: LibMTL examples/cityscapes/README.md (Dropbox).
`python scripts/download_data.py cityscapes` (or `make data-cityscapes`) installs it.
"""
from __future__ import annotations

from pathlib import Path

from mtl.datasets.dense import DenseDataset, DenseLayout, Modality, write_dense_fixture

LAYOUT = DenseLayout(
    name="cityscapes",
    title="Cityscapes (MTAN 128x256)",
    modalities={
        "image": Modality(("image",), 3, "float"),
        "segmentation": Modality(("label", "label_7"), None, "label"),
        "depth": Modality(("depth",), 1, "float"),
    },
    num_classes=7,
    image_size=(128, 256),
    split_sizes={"train": 2975, "val": 500},
    make_target="make data-cityscapes",
    env_var="CITYSCAPES_ROOT",
    default_root="data/cityscapes",
    inverse_depth=True,
)


def Cityscapes(root: str | Path, split: str, **kw) -> DenseDataset:
    """split: "train" or "val" (the test set)."""
    return DenseDataset(LAYOUT, root, split, **kw)


def write_fixture(root: str | Path, n_train: int = 4, n_val: int = 2, height: int = 32, width: int = 64,
                  label_folder: str = "label", **kw) -> Path:
    """A tiny Cityscapes in the real on-disk layout (`label_folder`: "label" or "label_7")."""
    return write_dense_fixture(LAYOUT, root, n_train, n_val, height, width, label_folder=label_folder, **kw)
