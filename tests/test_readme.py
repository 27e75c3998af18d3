"""The README's and the docs' commands and code stay true: their Python examples run, every
`python -m mtl.train` line composes, every `make` target and script they name exists."""
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
