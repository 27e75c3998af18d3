"""Download a benchmark's data set into the layout its loader reads.

Its command line is `scripts/download_data.py` (and the `make data-<name>` targets):

    python scripts/download_data.py nyuv2 [--root data/nyuv2]
    python scripts/download_data.py cityscapes [--root data/cityscapes]

Each data set is one small function registered with `@dataset(...)`; adding one means writing that
function and nothing else. The download is verified (bytes received equal the server's
Content-Length, the archive is a readable zip, optional SHA-256), extracted, checked by the data
set's own loader, and its size and SHA-256 are recorded in `<root>/DOWNLOAD_INFO.json`. Without
network access it stops with the URL and the manual steps.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mtl.errors import MTLError


class DownloadError(RuntimeError):
    """The data could not be fetched or failed verification; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One downloadable archive. `approx_bytes` is the published size (None if unpublished)."""

    url: str
    note: str = ""
    approx_bytes: int | None = None
    sha256: str | None = None
    min_bytes: int = 10_000_000  # anything smaller is an error page, not the data


_DATASETS: dict[str, tuple[Callable[[argparse.Namespace], None], str, str]] = {}


def dataset(name: str, help: str, default_root: str):
    """Register `fn(args)` as the subcommand `name` (args.root is the target folder)."""

    def deco(fn):
        _DATASETS[name] = (fn, help, default_root)
        return fn

    return deco


# ---- shared helpers --------------------------------------------------------------------------
def manual_steps(name: str, sources: list[Source], root: Path, layout: str) -> str:
    urls = "\n".join(f"    {s.url}  {s.note}" for s in sources)
    return (
        f"To install {name} by hand: download one of\n{urls}\n"
        f"  (in a browser; for a Dropbox folder link use 'Download' -> zip), unzip it and move the "
        f"folders so that\n    {root}/{layout}\n  exists, then run `python scripts/download_data.py "
        f"{name} --root {root} --verify-only`."
    )


def fetch(source: Source, dest: Path, timeout: float = 60.0) -> dict:
    """Download `source.url` to `dest`; verify the byte count (and SHA-256 if known)."""
    req = urllib.request.Request(source.url, headers={"User-Agent": "mtl-benchmark-suite/1.0"})
    sha = hashlib.sha256()
    n = 0
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
            expected = resp.headers.get("Content-Length")
            expected = int(expected) if expected is not None else None
            last = 0
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                sha.update(chunk)
                n += len(chunk)
                if n - last >= 100 << 20:
                    last = n
                    total = f" / {expected / 1e6:.0f} MB" if expected else ""
                    print(f"  {n / 1e6:.0f} MB{total}", flush=True)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as err:
        raise DownloadError(f"could not download {source.url}: {err}") from err
    if expected is not None and n != expected:
        raise DownloadError(f"{source.url}: received {n} bytes, server announced {expected} (truncated download)")
    if n < source.min_bytes:
        raise DownloadError(f"{source.url}: only {n} bytes received; this is not the data archive "
                            f"(Dropbox may have returned an error page)")
    digest = sha.hexdigest()
    if source.sha256 is not None and digest != source.sha256:
        raise DownloadError(f"{source.url}: SHA-256 {digest} != expected {source.sha256}")
    if not zipfile.is_zipfile(dest):
        raise DownloadError(f"{source.url}: the downloaded file is not a zip archive")
    return {"url": source.url, "bytes": n, "sha256": digest}


def find_split_root(top: Path, splits=("train", "val")) -> Path:
    """The folder under `top` (archives nest differently) that holds all `splits` folders."""
    candidates = [top] + sorted(p for p in top.rglob("*") if p.is_dir())
    for c in candidates:
        if all((c / s).is_dir() for s in splits):
            return c
    raise DownloadError(f"no folder with {'/'.join(splits)}/ sub-folders inside the archive extracted to {top}")


def download_and_extract(name: str, sources: list[Source], root: Path, layout: str) -> dict:
    """Try each source in turn; extract the first that verifies; move its splits into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        tmp = Path(tmp)
        for source in sources:
            size = f" (about {source.approx_bytes / 1e6:.0f} MB)" if source.approx_bytes else ""
            print(f"{name}: downloading {source.url}{size}", flush=True)
            archive = tmp / "archive.zip"
            try:
                info = fetch(source, archive)
            except DownloadError as err:
                errors.append(str(err))
                continue
            print(f"{name}: extracting {info['bytes'] / 1e6:.0f} MB", flush=True)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp / "x")
            archive.unlink()
            src = find_split_root(tmp / "x")
            for child in src.iterdir():
                target = root / child.name
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                shutil.move(str(child), str(target))
            return info
    raise DownloadError("\n".join([f"{name}: every download source failed:"] + [f"  - {e}" for e in errors]
                                  + [manual_steps(name, sources, root, layout)]))


def write_info(root: Path, info: dict, counts: dict) -> None:
    info = dict(info, counts=counts)
    (root / "DOWNLOAD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"recorded {root / 'DOWNLOAD_INFO.json'}: {info}")


# ---- data sets -------------------------------------------------------------------------------
NYUV2_SOURCES = [
    # MTAN README (lorenmt/mtan): pre-processed NYUv2 as one zip. Size not published.
    Source("https://www.dropbox.com/s/p2nn02wijg7peiy/nyuv2.zip?dl=1", "(MTAN README)"),
    # LibMTL examples/nyu/README.md and download.sh: the same data as a Dropbox folder.
    Source("https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=1",
           "(LibMTL examples/nyu/README.md, Dropbox folder)"),
]

CITYSCAPES_SOURCES = [
    # LibMTL examples/cityscapes/README.md: MTAN's 128x256 "cityscapes2" as a Dropbox folder.
    Source("https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=1",
           "(LibMTL examples/cityscapes/README.md, Dropbox folder)", approx_bytes=651_000_000),
    # MTAN README: the same 128x256 version as one zip, "651MB".
    Source("https://www.dropbox.com/s/lg2ktu7o8hzwf99/cityscapes2.zip?dl=1", "(MTAN README, 651 MB)",
           approx_bytes=651_000_000),
]


def _dense(name: str, sources: list[Source], module, args) -> None:
    root = Path(args.root)
    layout = module.LAYOUT.describe()
    if not args.verify_only:
        info = download_and_extract(name, sources, root, layout)
    else:
        info = {"url": None, "bytes": None, "sha256": None, "note": "installed by hand"}
    counts = module.LAYOUT.verify(root, full=True)
    write_info(root, info, counts)


@dataset("nyuv2", "NYUv2, MTAN pre-processing (795 train / 654 test, 288x384)", "data/nyuv2")
def nyuv2(args) -> None:
    from mtl.datasets import nyuv2 as module
    _dense("nyuv2", NYUV2_SOURCES, module, args)


@dataset("cityscapes", "Cityscapes, MTAN 128x256 version (2975 train / 500 test)", "data/cityscapes")
def cityscapes(args) -> None:
    from mtl.datasets import cityscapes as module
    _dense("cityscapes", CITYSCAPES_SOURCES, module, args)


# ---- Office-31 / Office-Home (no stable direct link: manual download, then extract + verify) ----
# LibMTL examples/office/README.md links only the datasets' landing pages; the archives behind them
# sit on Google Drive (confirmation pages, quota), so nothing is fetched automatically. The user puts
# the archive into --root; this step extracts it into the layout datasets/office.py reads and checks
# every image named in the split lists.
OFFICE_ARCHIVES = {
    "office31": ("Office-31", "https://www.cc.gatech.edu/~judy/domainadapt/#datasets_code",
                 "domain_adaptation_images.tar.gz"),
    "officehome": ("Office-Home", "https://www.hemanthdv.org/officeHomeDataset.html",
                   "OfficeHomeDataset_10072016.zip"),
}
OFFICE_ALIASES = {"Real World": "Real_World"}  # the Office-Home archive's folder name has a space


def _office_archive(root: Path) -> Path | None:
    found = sorted(p for p in root.glob("*") if p.is_file() and p.name.endswith((".zip", ".tar", ".tar.gz", ".tgz")))
    return found[0] if found else None


def _office_extract(archive: Path, root: Path, domains: tuple[str, ...]) -> None:
    """Unpack `archive` and move its domain folders (wherever the archive nests them) into `root`."""
    import tarfile

    with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
        tmp = Path(tmp)
        print(f"extracting {archive}", flush=True)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive")
        names = {d: [d] + [a for a, c in OFFICE_ALIASES.items() if c == d] for d in domains}
        for parent in [tmp] + sorted(p for p in tmp.rglob("*") if p.is_dir()):
            hits = {d: next((parent / n for n in ns if (parent / n).is_dir()), None) for d, ns in names.items()}
            if all(hits.values()):
                break
        else:
            raise DownloadError(f"{archive} holds no folder with all of {', '.join(domains)}")
        for d, src in hits.items():
            target = root / d
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(src), str(target))


def _office(name: str, args) -> None:
    from mtl.datasets import office

    title, page, archive_name = OFFICE_ARCHIVES[name]
    s = office.spec(name)
    root = Path(args.root)
    layout = office.image_relpath(name, "<domain>", "<class>", "<file>.jpg")
    info = {"url": None, "bytes": None, "sha256": None, "note": "installed by hand"}
    rename = " (rename 'Real World' to 'Real_World')" if "Real_World" in s.domains else ""
    if not args.verify_only:
        archive = _office_archive(root) if root.is_dir() else None
        extracted = all((root / d).is_dir() for d in s.domains)
        if archive is None and not extracted:
            raise DownloadError(
                f"{name}: {title} has no stable direct download link, so nothing was fetched.\n"
                f"  1. Download {archive_name} in a browser from {page}\n"
                f"  2. Put it into {root}/ and run `python scripts/download_data.py {name} --root {root}` "
                f"again: it is extracted and checked.\n"
                f"  Or extract it yourself so that {root}/{layout} exists for domains "
                f"{', '.join(s.domains)}{rename}, then run with --verify-only.\n"
                f"  Then point the benchmark at it: {s.env_var}={root}")
        if archive is not None:
            if extracted:
                print(f"{root} already holds {', '.join(s.domains)}; not extracting {archive.name} again")
            else:
                _office_extract(archive, root, s.domains)
            sha = hashlib.sha256()
            with open(archive, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(chunk)
            digest = sha.hexdigest()
            info = {"url": page, "archive": archive.name, "bytes": archive.stat().st_size, "sha256": digest}
    data = office.load_office(name, root)  # raises DatasetNotFound listing missing images
    counts = {split: {t: len(ds) for t, ds in per_task.items()} for split, per_task in data.items()}
    write_info(root, info, counts)


@dataset("office31", "Office-31 (amazon, dslr, webcam; manual download, then extract + verify)", "data/office31")
def office31(args) -> None:
    _office("office31", args)


@dataset("officehome", "Office-Home (Art, Clipart, Product, Real_World; manual download, then extract + verify)",
         "data/officehome")
def officehome(args) -> None:
    _office("officehome", args)


@dataset("qm9", "QM9 (no download: the cache is built offline from the qm9pack package, ~1.5 min)", "data/qm9")
def qm9(args) -> None:
    from mtl.datasets.qm9 import prepare

    print(f"QM9 cache ready in {prepare(root=args.root)}")


# ---- command line ----------------------------------------------------------------------------
def main(argv: list[str] | None = None, prog: str = "scripts/download_data.py") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="name", required=True)
    for name, (_, help_, default_root) in _DATASETS.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--root", default=default_root, help=f"target folder (default {default_root})")
        p.add_argument("--verify-only", action="store_true",
                       help="do not download; check data already in --root and record it")
    args = parser.parse_args(argv)
    try:
        _DATASETS[args.name][0](args)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except MTLError as err:  # DatasetNotFound / damaged or malformed files from the loader's check
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
