"""Dense-prediction data in MTAN's pre-processed `.npy` layout (NYUv2, Cityscapes).

On disk: `<root>/{train,val}/<modality>/<i>.npy`, i = 0..N-1, one array per image and modality:
image HxWx3 float in [0, 1] (no mean/std normalisation, as MTAN and LibMTL), label HxW class ids
with -1 = ignore, depth HxWx1 with 0 = invalid, normal HxWx3 unit vectors with the zero vector =
invalid. "val" is the test split (no validation split exists in the reference code).

Augmentation (LibMTL / nash-mtl `RandomScaleCrop` + flip): pick a scale s from `scales`, crop a
random (H/s)x(W/s) window, resize it back (image and normal bilinear with align_corners, label and
depth nearest), divide depth by s; then flip horizontally with p = 0.5, negating normal x. The
random draws depend only on (aug_seed, index) when `aug_seed` is set, so a resumed run sees the
same crops; the benchmark sets it from (seed, epoch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mtl.errors import DatasetDamaged, DatasetNotFound, brief

SPLITS = ("train", "val")
SCALES = (1.0, 1.2, 1.5)  # LibMTL examples/nyu/create_dataset.py RandomScaleCrop


class DatasetFormatError(DatasetDamaged):
    """A data file exists but is unreadable or has the wrong shape, dtype or values; the message
    names the file (and, for files read during training, how to restore it)."""


@dataclass(frozen=True)
class Modality:
    """One folder of arrays. `channels=None`: HxW; otherwise HxWxC. `folders`: accepted folder
    names, first existing one wins (Cityscapes labels live in `label/` or `label_7/`)."""

    folders: tuple[str, ...]
    channels: int | None
    kind: str  # "float" | "label"


@dataclass(frozen=True)
class DenseLayout:
    """Everything a loader must know about one data set's files, plus how to get them."""

    name: str
    title: str
    modalities: dict[str, Modality]  # target key ("image", "segmentation", ...) -> files
    num_classes: int
    image_size: tuple[int, int]
    split_sizes: dict[str, int]
    make_target: str
    env_var: str
    default_root: str
    inverse_depth: bool = False
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        folders = ",".join("|".join(m.folders) for m in self.modalities.values())
        return f"{{{','.join(SPLITS)}}}/{{{folders}}}/<i>.npy"

    def not_found(self, root: Path, looked_for: Path) -> DatasetNotFound:
        return DatasetNotFound(
            f"{self.title} not found: looked for {looked_for} (data root {root}; set it with the "
            f"config key benchmark.build.root or the environment variable {self.env_var}). "
            f"Expected layout <root>/{self.describe()}. Get the data with `{self.make_target}` "
            f"(= python scripts/download_data.py {self.name} --root {root})."
        )

    def restore_hint(self, root: Path) -> str:
        return (f"the file is damaged (e.g. an interrupted download or copy): restore the data set with "
                f"`{self.make_target}` (= python scripts/download_data.py {self.name} --root {root}), "
                f"then re-run; finished runs are kept and an interrupted one resumes")

    def folders(self, root: Path, split: str) -> dict[str, Path]:
        """The folder of each modality for `split`; raises DatasetNotFound naming what is missing."""
        split_dir = root / split
        out = {}
        for key, mod in self.modalities.items():
            found = next((split_dir / f for f in mod.folders if (split_dir / f).is_dir()), None)
            if found is None:
                names = " or ".join(str(split_dir / f) for f in mod.folders)
                raise self.not_found(root, Path(names))
            out[key] = found
        return out

    def count(self, root: Path, split: str) -> int:
        """Number of samples in `split`; every modality must hold exactly files 0..N-1."""
        root = Path(root)
        folders = self.folders(root, split)
        n = None
        for key, folder in folders.items():
            names = {p.name for p in folder.glob("*.npy")}
            if not names:
                raise self.not_found(root, folder / "0.npy")
            m = len(names)
            missing = [f"{i}.npy" for i in range(m) if f"{i}.npy" not in names]
            if missing:
                raise DatasetFormatError(
                    f"{folder}: {m} .npy files but not numbered 0..{m - 1} (missing e.g. {missing[0]})")
            if n is None:
                n = m
            elif m != n:
                first = next(iter(folders.values()))
                raise DatasetFormatError(f"{folder} holds {m} files but {first} holds {n}")
        return int(n)

    def verify(self, root: Path, full: bool = True) -> dict[str, int]:
        """Counts per split; with `full`, also the published split sizes and every file (readable,
        right shape and values), so a damaged download is caught here rather than mid-training."""
        root = Path(root)
        counts = {s: self.count(root, s) for s in SPLITS}
        if full:
            for s, n in counts.items():
                if n != self.split_sizes[s]:
                    raise DatasetFormatError(f"{root / s}: {n} samples, the published {self.title} "
                                             f"split has {self.split_sizes[s]}")
            for s in SPLITS:
                ds = DenseDataset(self, root, s, image_size=self.image_size)
                for i in range(len(ds)):
                    for key in self.modalities:
                        ds.load(key, i)
                ds[0]  # the sizes of the modalities agree
        return counts


def _check(arr: np.ndarray, path: Path, mod: Modality, hw: tuple[int, int] | None, num_classes: int):
    want = "HxW" if mod.channels is None else f"HxWx{mod.channels}"
    ndim = 2 if mod.channels is None else 3
    if arr.ndim != ndim or (mod.channels is not None and arr.shape[-1] != mod.channels):
        raise DatasetFormatError(f"{path}: shape {arr.shape}, expected {want}")
    if hw is not None and tuple(arr.shape[:2]) != tuple(hw):
        raise DatasetFormatError(f"{path}: spatial size {arr.shape[:2]}, expected {tuple(hw)}")
    if mod.kind == "float":
        if not np.issubdtype(arr.dtype, np.floating):
            raise DatasetFormatError(f"{path}: dtype {arr.dtype}, expected a float array")
    else:
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise DatasetFormatError(f"{path}: dtype {arr.dtype}, expected float or integer class ids")
        if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
            raise DatasetFormatError(f"{path}: class ids are not integers")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < -1 or hi > num_classes - 1:
            raise DatasetFormatError(f"{path}: class ids span [{lo:g}, {hi:g}], expected -1 (ignore) "
                                     f"or 0..{num_classes - 1}")
    if not np.isfinite(arr).all():
        raise DatasetFormatError(f"{path}: contains NaN or inf")


def random_scale_crop(image, label, depth, normal, scale: float, top: int, left: int):
    """Crop (H/scale)x(W/scale) at (top, left), resize back; depth divided by scale.
    Tensors are CxHxW (label HxW float); `normal` may be None (Cityscapes)."""
    H, W = image.shape[-2:]
    h, w = int(H / scale), int(W / scale)
    sl = (slice(top, top + h), slice(left, left + w))

    def resize(t, mode):
        kw = {"align_corners": True} if mode == "bilinear" else {}
        return F.interpolate(t[None, ..., sl[0], sl[1]], size=(H, W), mode=mode, **kw)[0]

    image = resize(image, "bilinear")
    label = resize(label[None], "nearest")[0]
    depth = resize(depth, "nearest") / scale
    if normal is not None:
        normal = resize(normal, "bilinear")
    return image, label, depth, normal


def hflip(image, label, depth, normal):
    """Mirror left-right; the normal's x component changes sign."""
    image, label, depth = image.flip(-1), label.flip(-1), depth.flip(-1)
    if normal is not None:
        normal = normal.flip(-1).clone()
        normal[0] = -normal[0]
    return image, label, depth, normal


class DenseDataset(Dataset):
    """Returns (image [3,H,W] float32, {"segmentation": [H,W] int64, "depth": [1,H,W],
    "normal": [3,H,W] (if the layout has normals)})."""

    def __init__(self, layout: DenseLayout, root: str | Path, split: str, *, augment: bool = False,
                 scales: Sequence[float] = SCALES, flip: bool = True,
                 image_size: Sequence[int] | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.layout = layout
        self.root = Path(root).expanduser()
        self.split = split
        self.augment = augment
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.image_size = tuple(image_size) if image_size is not None else None
        self.dirs = layout.folders(self.root, split)
        self.n = layout.count(self.root, split)
        self.aug_seed: int | None = None

    def __len__(self) -> int:
        return self.n

    def load(self, key: str, i: int) -> np.ndarray:
        path = self.dirs[key] / f"{i}.npy"
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DatasetFormatError(f"{path}: not a readable .npy array ({brief(err)}); "
                                     f"{self.layout.restore_hint(self.root)}") from None
        try:
            _check(arr, path, self.layout.modalities[key], self.image_size, self.layout.num_classes)
        except DatasetFormatError as err:
            raise DatasetFormatError(f"{err}; {self.layout.restore_hint(self.root)}") from None
        return arr

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        arrays = {k: self.load(k, i) for k in self.layout.modalities}
        shapes = {k: a.shape[:2] for k, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise DatasetFormatError(f"{self.root / self.split}: sample {i} has mismatched sizes {shapes}")
        image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arrays["image"], -1, 0))).float()
        label = torch.from_numpy(np.ascontiguousarray(arrays["segmentation"])).float()
        depth = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arrays["depth"], -1, 0))).float()
        normal = None
        if "normal" in arrays:
            normal = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arrays["normal"], -1, 0))).float()
        if self.augment:
            image, label, depth, normal = self._augment(i, image, label, depth, normal)
        targets = {"segmentation": label.long(), "depth": depth}
        if normal is not None:
            targets["normal"] = normal
        return image, targets

    def _augment(self, i, image, label, depth, normal):
        gen = None
        if self.aug_seed is not None:
            gen = torch.Generator().manual_seed((int(self.aug_seed) * 1_000_003 + i) % (2 ** 63))
        H, W = image.shape[-2:]
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=gen))]
        h, w = int(H / scale), int(W / scale)
        top = int(torch.randint(H - h + 1, (1,), generator=gen))
        left = int(torch.randint(W - w + 1, (1,), generator=gen))
        out = random_scale_crop(image, label, depth, normal, scale, top, left)
        if self.flip and float(torch.rand(1, generator=gen)) < 0.5:
            out = hflip(*out)
        return out


def write_dense_fixture(layout: DenseLayout, root: str | Path, n_train: int, n_val: int,
                        height: int, width: int, *, seed: int = 0, label_folder: str | None = None,
                        dtype=np.float32) -> Path:
    """Write a tiny random data set in the exact on-disk layout (tests, smoke runs).

    Every image has some ignored labels (-1), invalid depth (0) and invalid normals (zero vector)
    so the masking paths are exercised; every class appears in each split when the image is large
    enough."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    C = layout.num_classes
    for split, n in (("train", n_train), ("val", n_val)):
        for key, mod in layout.modalities.items():
            folder = mod.folders[0]
            if key == "segmentation" and label_folder is not None:
                if label_folder not in mod.folders:
                    raise ValueError(f"{layout.name}: label folder must be one of {mod.folders}")
                folder = label_folder
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.random((height, width, 3)).astype(dtype)
            lab = (np.arange(height * width).reshape(height, width) + i) % C
            lab = rng.permutation(lab.ravel()).reshape(height, width).astype(dtype)
            invalid = rng.random((height, width)) < 0.1
            lab[invalid] = -1
            if layout.inverse_depth:
                dep = rng.uniform(0.005, 0.4, (height, width, 1))
            else:
                dep = rng.uniform(0.5, 10.0, (height, width, 1))
            dep[rng.random((height, width)) < 0.1] = 0.0
            arrays = {"image": img, "segmentation": lab, "depth": dep.astype(dtype)}
            if "normal" in layout.modalities:
                nor = rng.normal(size=(height, width, 3))
                nor /= np.linalg.norm(nor, axis=-1, keepdims=True)
                nor[rng.random((height, width)) < 0.1] = 0.0
                arrays["normal"] = nor.astype(dtype)
            for key, arr in arrays.items():
                mod = layout.modalities[key]
                folder = label_folder if key == "segmentation" and label_folder else mod.folders[0]
                np.save(root / split / folder / f"{i}.npy", arr)
    return root
