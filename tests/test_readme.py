"""The README's and the docs' commands and code stay true: their Python examples run, every
`python -m mtl.train` / `mtl-train` line composes, every `make` target, script, console command,
project path and `mtl.*` name they mention exists."""
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from mtl import methods
from mtl.methods.registry import _REGISTRY
from mtl.config.compose import compose

ROOT = Path(__file__).resolve().parents[1]
FRONT = (ROOT / "README.md").read_text()
# the README and every page of docs/, read as one text
README = "\n".join([FRONT, *(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md")))])


def code_blocks(lang, text=None):
    return re.findall(rf"```{lang}\n(.*?)```", README if text is None else text, flags=re.S)


def test_readme_opens_with_demo_and_test():
    first = code_blocks("bash", FRONT)[0].splitlines()
    assert first[0].startswith("make demo") and first[1].startswith("make test")


def test_own_training_loop_example_runs():
    block = next(b for b in code_blocks("python") if "methods.create(\"db_mtl\"" in b)
    scope: dict = {}
    exec(block, scope)
    assert scope["info"]["grad_norms"].shape == (3,)
    assert all(p.grad is not None for p in scope["encoder"].parameters())


def test_add_a_method_example_registers_and_trains(tmp_path):
    block = next(b for b in code_blocks("python") if "class MyMethod" in b)
    try:
        exec(block, {})
        assert "my_method" in methods.available()
        import torch

        m = methods.create("my_method", num_tasks=2)
        w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        losses = torch.stack([w[0] ** 2, 3 * w[1]])
        info = m.backward(losses, [w], [])
        # G = [[2, 0], [0, 3]] -> weights 1/2, 1/3 -> update [1, 1]
        assert torch.allclose(w.grad, torch.tensor([1.0, 1.0]))
        assert torch.allclose(info["weights"], torch.tensor([0.5, 1 / 3]))
    finally:
        _REGISTRY.pop("my_method", None)


def train_commands():
    for line in README.splitlines():
        line = line.strip().strip("`")
        if line.startswith("python -m mtl.train"):
            yield line.split("#")[0].strip()
        elif line.startswith("mtl-train "):  # the console entry point: the same arguments
            yield "python -m mtl.train " + line.split("#")[0].strip()[len("mtl-train "):]


@pytest.mark.parametrize("command", list(train_commands()))
def test_train_commands_compose(command):
    args = [a for a in shlex.split(command)[3:] if a != "-m"]
    overrides = [a.split("=", 1)[0] + "=" + a.split("=", 1)[1].split(",")[0] if "=" in a else a for a in args]
    overrides = [o for o in overrides if not o.startswith("run.tag=")]  # tag interpolates sweep values
    cfg = compose(overrides)
    assert cfg.benchmark.name and cfg.method.name


def test_make_targets_exist():
    targets = set(re.findall(r"\bmake ([a-z][a-z0-9-]+)", README))
    assert {"demo", "test", "reproduce-demo", "sweep-beta", "compare"} <= targets
    for target in targets:
        r = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, f"make {target}: {r.stderr}"


def test_scripts_exist():
    for script in set(re.findall(r"python (scripts/[a-z_]+\.py)", README)):
        assert (ROOT / script).exists(), script


# the docs as they describe the current tree: development.md's before/after map of the restructure
# names the old paths on purpose
CURRENT = re.sub(r"### Before and after.*?(?=\n## |\Z)", "", README, flags=re.S)


def _placeholder(text):
    return any(c in text for c in "<>*{}…") or "my_" in text


def test_paths_the_docs_name_exist():
    """Every file or folder of the project the README or a docs page names is there (no stale paths
    after a move); names with placeholders (`<bench>`, `my_method`, globs) are examples."""
    pattern = r"(?<![\w./-])((?:mtl|configs|datasets|models|scripts|tests|hydra_plugins|docs)/[\w./-]*\w)"
    missing = sorted({p for p in re.findall(pattern, CURRENT)
                      if not _placeholder(p) and not (ROOT / p).exists()})
    assert not missing, f"README/docs name paths that do not exist: {missing}"


def test_python_names_the_docs_mention_exist():
    """Every `mtl.x.y` name in backticks imports (a module, or a name in one), every `python -m mtl.x`
    is a module, and every `from mtl.x import y` of a code example imports."""
    import importlib

    def resolves(dotted):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                return False
            return True
        return False

    names = set(re.findall(r"`(mtl(?:\.\w+)+)(?:\(.*?\))?`", CURRENT))
    names |= set(re.findall(r"python -m (mtl(?:\.\w+)*)", README))
    for module, items in re.findall(r"^\s*from (mtl(?:\.\w+)*) import ([\w, ]+)$", README, flags=re.M):
        names |= {f"{module}.{n.strip()}" for n in items.split(",") if n.strip()}
    bad = sorted(n for n in names if not _placeholder(n) and not resolves(n))
    assert not bad, f"README/docs mention names that do not import: {bad}"


def test_console_commands_the_docs_name_are_installed_entry_points():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    named = set(re.findall(r"(?<![\w/-])(mtl-[a-z-]*[a-z])\b", README))
    assert named, "the docs name no console command"
    assert named <= set(scripts), f"not in [project.scripts]: {sorted(named - set(scripts))}"
    assert set(scripts) <= named, f"console commands the docs do not mention: {sorted(set(scripts) - named)}"
    import importlib

    for name, target in scripts.items():  # each entry point's function exists
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name
