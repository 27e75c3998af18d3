"""The house and the package: every import points down the layers (no circles), and the suite
installs as the one import name `mtl`, beside HuggingFace `datasets` and a user's own `models`,
from a checkout (editable) or a wheel, run from the checkout's root or any other directory."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mtl"

# Layers, bottom first: a module may import its own unit, and units of lower layers only.
LAYERS: list[set[str]] = [
    {"mtl", "mtl.errors", "mtl.paths"},
    {"mtl.engine", "mtl.config"},
    {"mtl.methods", "mtl.models", "mtl.datasets"},
    {"mtl.benchmarks"},
    {"mtl.scoring"},
    {"mtl.run"},
    {"mtl.report"},
    {"mtl.campaigns", "mtl.perf"},
    {"mtl.train", "mtl.runs"},
]
# Beside the layers: a benchmark, its data and its model know nothing of the methods.
FORBIDDEN = {("mtl.benchmarks", "mtl.methods"), ("mtl.models", "mtl.methods"), ("mtl.datasets", "mtl.methods"),
             ("mtl.datasets", "mtl.benchmarks"), ("mtl.datasets", "mtl.models")}
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, through the mtl/datasets, mtl/models symlinks."""
    out = {}
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d not in ("configs", "__pycache__")]
        rel = Path(folder).relative_to(PACKAGE)
        for f in files:
            if f.endswith(".py"):
                parts = ["mtl", *rel.parts] + ([] if f == "__init__.py" else [f[:-3]])
                out[".".join(parts)] = Path(folder) / f
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules `path` imports, at module level or inside functions (annotations-only
    imports under `if TYPE_CHECKING:` aside: they never run)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # `from mtl.x import y`: y is a module or a name in mtl.x
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != name}


def unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, m, set(mods)) for m, p in mods.items()}


def test_every_module_has_a_layer(graph):
    assert "mtl.run.trainer" in graph and "mtl.datasets.qm9" in graph and "mtl.models.base" in graph
    assert not sorted({unit(m) for m in graph} - set(LAYER)), "add the new folder to LAYERS"


def test_imports_point_down(graph):
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
              if unit(d) != unit(m) and (LAYER[unit(d)] >= LAYER[unit(m)] or (unit(m), unit(d)) in FORBIDDEN)]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_circles(graph):
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_graph_sees_an_upward_import(tmp_path):
    """The checker itself: a module importing a higher layer is reported."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from mtl.run.trainer import Trainer\n")
    deps = imports(bad, "mtl.methods.x", set(modules()) | {"mtl.methods.x"})
    assert deps == {"mtl.run.trainer"} and LAYER[unit("mtl.run.trainer")] > LAYER["mtl.methods"]


# ---- installing beside packages named `datasets` and `models` ----------------------------------
def _stand_ins(site: Path) -> None:
    """A stand-in HuggingFace `datasets` (with `load_dataset`) and a user's `models` package."""
    (site / "datasets").mkdir(parents=True)
    (site / "datasets" / "__init__.py").write_text("def load_dataset(name):\n    return f'hf:{name}'\n")
    (site / "models").mkdir()
    (site / "models" / "__init__.py").write_text("WHO = 'user models package'\n")


CHECK = ("from datasets import load_dataset; import models; import mtl.datasets.qm9, mtl.models.base; "
         "assert load_dataset('x') == 'hf:x', load_dataset; assert models.WHO == 'user models package'; "
         "print('mtl from', __import__('mtl').__file__)")


def _python(code_or_args, cwd: Path, pythonpath: list[Path], timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "WANDB_MODE": "disabled"}
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("where", ["repo_root", "elsewhere"])
def test_coexists_with_datasets_and_models_packages(tmp_path, where):
    site = tmp_path / "site"
    _stand_ins(site)
    cwd = ROOT if where == "repo_root" else tmp_path
    r = _python(CHECK, cwd, [site])
    assert r.returncode == 0, r.stderr[-3000:]
    assert str(ROOT / "mtl") in r.stdout


def test_a_models_py_of_the_users_own_does_not_break_training(tmp_path):
    (tmp_path / "models.py").write_text("raise SystemExit('the user models.py was imported by the suite')\n")
    (tmp_path / "datasets.py").write_text("raise SystemExit('the user datasets.py was imported by the suite')\n")
    r = _python(["-m", "mtl.train", "benchmark=synthetic", "method=ew", "logger=none", "device=cpu",
                 "trainer.epochs=1", "benchmark.build.n_train=128", f"run.root={tmp_path / 'runs'}"], tmp_path, [])
    assert r.returncode == 0, r.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("summary.json"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built with this environment's setuptools (no build isolation: nothing is
    downloaded, the test stays on the machine)."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_wheel_ships_configs_and_data_under_mtl(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "mtl/configs/train.yaml" in names and "mtl/configs/benchmark/synthetic.yaml" in names
    assert "mtl/datasets/qm9_data/libmtl_random_split.npy" in names and "mtl/models/base.py" in names
    assert "hydra_plugins/mtl_ray_launcher/ray_launcher.py" in names
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"mtl", "hydra_plugins"}, tops  # nothing named datasets or models
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mtl-train = mtl.train:cli" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_wheel_trains_from_another_directory(wheel, tmp_path):
    """`pip install <wheel>` into its own folder (the dependencies come from this environment), then
    train from a directory that is not the checkout, beside the stand-in packages."""
    target = tmp_path / "installed"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    site = tmp_path / "site"
    _stand_ins(site)
    work = tmp_path / "work"
    work.mkdir()
    r = _python(CHECK, work, [target, site])
    assert r.returncode == 0 and str(target / "mtl") in r.stdout, (r.stdout, r.stderr[-3000:])
    r = _python(["-m", "mtl.train", "benchmark=synthetic", "method=ew", "logger=none", "device=cpu",
                 "trainer.epochs=1", "benchmark.build.n_train=128"], work, [target, site])
    assert r.returncode == 0, r.stderr[-3000:]
    (summary,) = (work / "results" / "runs").rglob("summary.json")
    assert "synthetic" in str(summary)
