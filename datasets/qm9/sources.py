"""Where QM9's raw data comes from and that it is the expected one: qm9pack's three part CSVs,
located without importing qm9pack, checked against the sha256s of the pinned release, and read in
order. Also the cache folder (`default_root`)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np

from mtl.datasets.qm9.targets import SOURCE_COLUMNS
from mtl.errors import DatasetNotFound
from mtl.paths import project_root

LOADER_VERSION = "1"
QM9PACK_VERSION = "1.0.3"
INSTALL_HINT = f"pip install qm9pack=={QM9PACK_VERSION}"
NUM_MOLECULES = 130_831
PART_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
PART_ROWS = (43_610, 43_611, 43_610)
# sha256 of the CSVs in the qm9pack 1.0.3 wheel (checked before every build/load).
CSV_SHA256 = {
    "qm9_part1.csv": "19f0a5d595462d52cd82eef3370f3e9eb55a1f52cb14985657200349568deff3",
    "qm9_part2.csv": "2bca113fdc0b28a13563c80ed9b240e934f3da6c64c64fe74ddb4f0f36036e61",
    "qm9_part3.csv": "9c5efb5733d2af149db8d95d36ff198b4ffed12d9f7b344220a1e5877d5c6a43",
}


def default_root() -> Path:
    """Cache dir: $QM9_ROOT if set, else <project>/data/qm9."""
    env = os.environ.get("QM9_ROOT")
    return Path(env) if env else project_root() / "data" / "qm9"


def qm9pack_data_dir() -> Path:
    """qm9pack's data folder, found without importing qm9pack (its __init__ needs pkg_resources,
    which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFound(
            f"QM9: the `qm9pack` package is not installed (looked for it on sys.path). "
            f"Install it with `{INSTALL_HINT}`; the QM9 graphs are built from its CSVs.")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f for f in PART_FILES if not (data / f).is_file()]
    if missing:
        raise DatasetNotFound(f"QM9: qm9pack at {data.parent} lacks {missing} in {data}; "
                              f"reinstall with `{INSTALL_HINT}`.")
    return data


def qm9pack_version() -> str:
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_HASHES: dict[tuple, str] = {}


def sha256(path: Path) -> str:
    """sha256 of a file, memoised per process on (path, size, mtime) so repeated dataset
    constructions do not re-read 225 MB."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = _sha256(path)
    return _HASHES[key]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_sources(data_dir: Path, expected: dict[str, str] = CSV_SHA256) -> dict[str, str]:
    """sha256 of the part CSVs; raises DatasetNotFound if they are not qm9pack 1.0.3's."""
    got = {f: sha256(data_dir / f) for f in PART_FILES}
    bad = {f: got[f] for f in PART_FILES if got[f] != expected[f]}
    if bad:
        raise DatasetNotFound(
            f"QM9: CSVs in {data_dir} differ from qm9pack {QM9PACK_VERSION}'s "
            f"(sha256 mismatch: {bad}); install the pinned release with `{INSTALL_HINT}`.")
    return got


def read_csvs(data_dir: Path, limit: int | None = None):
    """The three part CSVs, concatenated in order (first `limit` rows only if given)."""
    import pandas as pd

    cols = ["XYZ_file", "Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", *SOURCE_COLUMNS.values()]
    frames, left = [], limit
    for f, n in zip(PART_FILES, PART_ROWS):
        if left is not None and left <= 0:
            break
        nrows = None if left is None or left >= n else left
        frames.append(pd.read_csv(data_dir / f, usecols=cols, nrows=nrows))
        if left is not None:
            left -= len(frames[-1])
    df = pd.concat(frames, ignore_index=True)
    expected = NUM_MOLECULES if limit is None else min(limit, NUM_MOLECULES)
    index = df["Index"].to_numpy()
    file_no = df["XYZ_file"].str.extract(r"_(\d+)\.xyz")[0].astype(np.int64).to_numpy()
    if len(df) != expected or not np.all(np.diff(index) > 0) or not np.array_equal(index, file_no):
        raise DatasetNotFound(f"QM9: unexpected content in {data_dir} ({len(df)} rows, expected "
                              f"{expected} with ascending Index == XYZ_file number); `{INSTALL_HINT}`.")
    return df
