"""Where the suite's own files are. The configs ship inside the package (`mtl/configs`, the
checkout's `configs/`), so an installed wheel composes runs from any directory; results, data and
the published tables live in the project: the checkout the package runs from, else the current
directory."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE / "configs"


def project_root() -> Path:
    """The checkout holding this package (a folder with pyproject.toml above `mtl/`), or the current
    directory for an installed package: results/, data/ and run roots are relative to it."""
    checkout = PACKAGE.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
