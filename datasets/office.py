"""Office-31 and Office-Home image folders, read through LibMTL's fixed 60/20/20 split lists.

Layouts under the dataset root (the split lists name paths relative to it, domain folder included):
- Office-31: `<root>/{amazon,dslr,webcam}/images/<class>/<file>.jpg`
- Office-Home: `<root>/{Art,Clipart,Product,Real_World}/<class>/<file>.jpg`
Images are resized to `image_size` x `image_size` (224 in the reference) and ImageNet-normalised,
as in LibMTL `examples/office/create_dataset.py` (no augmentation). The split lists ship with the
project in `datasets/office_splits/` (see its README); fixtures pass their own list directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from mtl.errors import DatasetDamaged, DatasetNotFound, brief

SPLITS = ("train", "val", "test")
DEFAULT_SPLITS_DIR = Path(__file__).resolve().parent / "office_splits"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OfficeSpec:
    name: str
    list_dir: str              # sub-folder of the split-list directory
    domains: tuple[str, ...]   # folder names under the root, in task order
    num_classes: int
    images_subdir: str         # "images" (Office-31) or "" (Office-Home)
    env_var: str
    how_to_get: str


SPECS = {
    "office31": OfficeSpec(
        "office31", "office-31", ("amazon", "dslr", "webcam"), 31, "images", "OFFICE31_ROOT",
        "Download Office-31 (Saenko et al. 2010; https://www.cc.gatech.edu/~judy/domainadapt/#datasets_code, "
        "archive domain_adaptation_images.tar.gz), put the archive into <root> and run `python "
        "scripts/download_data.py office31 --root <root>` (or extract it so that <root>/amazon/images/<class>/*.jpg "
        "exists) and set OFFICE31_ROOT=<root>."),
    "officehome": OfficeSpec(
        "officehome", "office-home", ("Art", "Clipart", "Product", "Real_World"), 65, "", "OFFICEHOME_ROOT",
        "Download Office-Home (Venkateswara et al. 2017; https://www.hemanthdv.org/officeHomeDataset.html, "
        "archive OfficeHomeDataset_10072016.zip), put the archive into <root> and run `python "
        "scripts/download_data.py officehome --root <root>` (or extract it so that <root>/Art/<class>/*.jpg exists; the "
        "archive's 'Real World' folder must be named 'Real_World') and set OFFICEHOME_ROOT=<root>."),
}


def spec(dataset: str) -> OfficeSpec:
    try:
        return SPECS[dataset]
    except KeyError:
        raise ValueError(f"office dataset {dataset!r} unknown; choose one of {sorted(SPECS)}") from None


def task_name(domain: str) -> str:
    """Task name of a domain folder: lower case (`Real_World` -> `real_world`)."""
    return domain.lower()


def image_relpath(dataset: str, domain: str, cls: str, filename: str) -> str:
    """Path of one image relative to the root, as the split lists write it."""
    sub = spec(dataset).images_subdir
    return "/".join(p for p in (domain, sub, cls, filename) if p)


def list_path(dataset: str, domain: str, split: str, splits_dir: str | os.PathLike | None = None) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} unknown; choose one of {SPLITS}")
    base = Path(splits_dir) if splits_dir is not None else DEFAULT_SPLITS_DIR
    return base / spec(dataset).list_dir / f"{domain}_{split}.txt"


def read_split_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Parse `<relative path> <label>` lines (LibMTL data_txt format)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFound(f"split list {path} not found (the lists ship in {DEFAULT_SPLITS_DIR})")
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected '<path> <label>', got {line!r}")
        entries.append((parts[0], int(parts[1])))
    return entries


def image_transform(image_size: int = 224) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize((image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class OfficeDomain(Dataset):
    """One domain's images of one split: items are (image [3, S, S] float, label int64)."""

    def __init__(self, root: str | os.PathLike, entries: Sequence[tuple[str, int]], image_size: int = 224,
                 dataset: str | None = None):
        self.root = Path(root)
        self.entries = list(entries)
        self.transform = image_transform(image_size)
        self.dataset = dataset  # names the `make data-<dataset>` step in the message for a damaged image

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        rel, label = self.entries[i]
        path = self.root / rel
        try:
            with Image.open(path) as img:
                x = self.transform(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:  # PIL: truncated, unidentified or corrupt data
            domain = self.root / rel.split("/")[0]
            make = f"`make data-{self.dataset}`" if self.dataset else "the data set's download script"
            raise DatasetDamaged(f"{path}: not a readable image ({brief(err)}); the file is damaged "
                                 f"(e.g. an interrupted extraction): delete {domain} and run {make} to extract it "
                                 f"again from the archive in {self.root}, or replace the file from the archive; "
                                 f"finished runs are kept and an interrupted one resumes") from None
        return x, torch.tensor(label, dtype=torch.long)


def load_office(dataset: str, root: str | os.PathLike, image_size: int = 224,
                splits_dir: str | os.PathLike | None = None, check_files: bool = True
                ) -> dict[str, dict[str, OfficeDomain]]:
    """{split: {task: OfficeDomain}} for every domain; all listed files are checked up front so a
    partial download fails at once with one message rather than mid-epoch."""
    s = spec(dataset)
    root = Path(root)
    out: dict[str, dict[str, OfficeDomain]] = {}
    missing: list[str] = []
    total = 0
    for split in SPLITS:
        out[split] = {}
        for domain in s.domains:
            entries = read_split_list(list_path(dataset, domain, split, splits_dir))
            bad = [(p, y) for p, y in entries if not 0 <= y < s.num_classes]
            if bad:
                raise ValueError(f"{dataset} {domain}_{split}: label {bad[0][1]} of {bad[0][0]} outside 0..{s.num_classes - 1}")
            total += len(entries)
            if check_files:
                missing += [p for p, _ in entries if not (root / p).is_file()]
            out[split][task_name(domain)] = OfficeDomain(root, entries, image_size, dataset=dataset)
    if missing:
        shown = "\n  ".join(missing[:5])
        where = f"{root.resolve()}" + ("" if root.is_dir() else " (this folder does not exist)")
        raise DatasetNotFound(
            f"{dataset}: {len(missing)} of {total} images listed in the split lists are missing under "
            f"{where}; first ones:\n  {shown}\nExpected layout: <root>/"
            f"{image_relpath(dataset, '<domain>', '<class>', '<file>.jpg')} with domains "
            f"{', '.join(s.domains)}.\n{s.how_to_get}")
    return out


# ---- fixtures ----------------------------------------------------------------------------------
def write_fixture(root: str | os.PathLike, dataset: str = "office31", splits_dir: str | os.PathLike | None = None,
                  num_classes: int = 3, per_class: Sequence[Sequence[int]] | None = None,
                  size: tuple[int, int] = (20, 16), seed: int = 0) -> Path:
    """Write a tiny JPEG dataset in the real layout plus matching split lists; returns the split-list
    directory (pass it as `splits_dir`). `per_class[d] = (train, val, test)` images per class for
    domain d (default: domain d gets 2 + d training images per class, 1 val, 1 test). Each class has
    its own mean colour, so the fixture is learnable."""
    s = spec(dataset)
    root = Path(root)
    splits_dir = Path(splits_dir) if splits_dir is not None else root / "splits"
    if per_class is None:
        per_class = [(2 + d, 1, 1) for d in range(len(s.domains))]
    if len(per_class) != len(s.domains):
        raise ValueError(f"per_class needs one (train, val, test) triple per domain ({len(s.domains)})")
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, size=(num_classes, 3))
    (splits_dir / s.list_dir).mkdir(parents=True, exist_ok=True)
    for d, domain in enumerate(s.domains):
        lines: dict[str, list[str]] = {split: [] for split in SPLITS}
        for c in range(num_classes):
            cls = f"class_{c:02d}"
            k = 0
            for split, n in zip(SPLITS, per_class[d]):
                for _ in range(n):
                    rel = image_relpath(dataset, domain, cls, f"{k:05d}.jpg")
                    k += 1
                    pix = np.clip(colours[c] + rng.normal(0, 20, size=(size[1], size[0], 3)), 0, 255)
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pix.astype(np.uint8), "RGB").save(root / rel, format="JPEG")
                    lines[split].append(f"{rel} {c}")
        for split in SPLITS:
            list_path(dataset, domain, split, splits_dir).write_text("".join(f"{ln}\n" for ln in lines[split]))
    return splits_dir
