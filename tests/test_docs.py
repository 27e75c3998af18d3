"""The documentation site builds strictly (`make docs`): every page, the generated per-method and
per-benchmark pages (mkdocs_hooks.py), the mkdocstrings API references and every link resolve with
no warning."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs / mkdocstrings not installed (pip install -e '.[dev]' installs them)")


@needs_mkdocs
def test_docs_build_strictly_without_warnings(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "WARNING" not in log, log[-4000:]
    site = tmp_path / "site"
    from mtl import methods
    from mtl.benchmarks import available

    for name in methods.available():  # a page per method, its hyperparameter table from the config
        page = (site / "methods" / name / "index.html").read_text()
        assert "Hyperparameters" in page and f"method={name}" in page, name
    for name in available():
        page = (site / "benchmarks" / name / "index.html").read_text()
        assert "Tasks and metrics" in page and "Protocol" in page, name
    assert (site / "speed" / "index.html").exists()
    db = (site / "methods" / "db_mtl" / "index.html").read_text()
    assert "LibMTL weighting/DB_MTL.py" in db and "a number in [0, 1)" in db  # docstring and spec


def test_every_method_module_has_the_docstring_its_page_shows():
    """A method's page is its module docstring (formula, reference): a new method needs one."""
    import importlib

    from mtl import methods

    for name in methods.available():
        doc = importlib.import_module(methods.get_class(name).__module__).__doc__ or ""
        assert len(doc.strip()) > 40, f"{name}: write the formula and the reference in its module docstring"
