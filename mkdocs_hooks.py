"""mkdocs hook (mkdocs.yml `hooks:`): the per-method and per-benchmark pages, written at build time
from the code so they cannot drift from it.

- methods/<name>.md: the method module's docstring (formula, reference; rendered by mkdocstrings),
  its config file's source comment, and its hyperparameters: default (configs/method/<name>.yaml,
  tested equal to the constructor's), what the declared spec accepts (mtl/methods/_hparams.py).
- benchmarks/<name>.md: the registry's view (mtl.benchmarks.spec): tasks, metrics with direction
  and unit, the training protocol and the STL reference, and the config file's comment.

Both lists are added to the navigation under "Methods" and "Benchmarks". Nothing is written into
docs/: the pages exist only in the built site.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent
METHOD_DIR, BENCH_DIR = "methods", "benchmarks"


def _comment(path: Path) -> str:
    """The leading `#` lines of a YAML file, as one paragraph."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip().replace("<", "&lt;").replace(">", "&gt;"))
    return " ".join(lines)


def _value(v) -> str:
    if v is None:
        return "`null`"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, (dict, list)):
        return f"`{json.dumps(v)}`"
    return f"`{v}`"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def method_names() -> list[str]:
    from mtl import methods

    return methods.available()


def benchmark_names() -> list[str]:
    from mtl.benchmarks import available

    return available()


def method_page(name: str) -> str:
    from mtl import methods
    from mtl.methods._hparams import specs
    from mtl.methods.base import LossWeighting

    cls = methods.get_class(name)
    cfg_path = ROOT / "configs" / "method" / f"{name}.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.pop("name", None)
    kind = "loss weighting" if issubclass(cls, LossWeighting) else "gradient method"
    facts = [f"kind: {kind}", f"class `{cls.__module__}.{cls.__name__}`",
             f"representation gradients: {'yes' if getattr(cls, 'supports_rep_grad', False) else 'no'}"]
    if getattr(cls, "batches_per_step", 1) != 1:
        facts.append(f"mini-batches per step: {cls.batches_per_step}")
    if getattr(cls, "min_tasks", 1) > 1:
        facts.append(f"at least {cls.min_tasks} tasks")
    declared = specs(cls)
    rows = ["| `method.` key | default | accepts |", "|---|---|---|"]
    for key, default in cfg.items():
        spec = declared.get(key)
        accepts = spec.describe(None) if spec is not None else ""
        rows.append(f"| `{key}` | {_cell(_value(default))} | {_cell(accepts)} |")
    return "\n".join([
        f"# `{name}`", "",
        " · ".join(facts), "",
        f"Run it: `python -m mtl.train benchmark=synthetic method={name}`; config "
        f"`configs/method/{name}.yaml`" + (f": {_comment(cfg_path)}" if _comment(cfg_path) else "."), "",
        "## Formula and reference", "",
        f"::: {cls.__module__}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
        "## Hyperparameters", "",
        "Defaults are the config file's (the reference's values, tested equal to the constructor's); "
        "a value outside what the method accepts is a one-line error before anything is built.", "",
        *rows, "",
        "[All methods](../methods.md)", "",
    ])


def benchmark_page(name: str) -> str:
    from mtl.benchmarks import spec

    s = spec(name)
    cfg_path = ROOT / "configs" / "benchmark" / f"{name}.yaml"
    p = s.protocol
    rows = ["| task | metric | better | unit | STL reference |", "|---|---|---|---|---|"]
    ref = s.reference or {}
    for t in s.tasks:
        for m in t.metrics:
            r = (ref.get(t.name) or {}).get(m.name)
            rows.append(f"| `{t.name}` | `{m.name}` | {'higher' if m.higher_is_better else 'lower'} | "
                        f"{_cell(m.unit or '')} | {'' if r is None else r} |")
    opt = {k: v for k, v in (p.get("optimizer") or {}).items()}
    sched = {k: v for k, v in (p.get("scheduler") or {}).items()} if p.get("scheduler") else None
    protocol = [
        f"- epochs: {p.get('epochs')}",
        f"- optimizer: {_value(opt)}",
        f"- scheduler: {_value(sched)}",
        f"- selection: `{p.get('selection')}` (baseline `{p.get('selection_baseline')}`, ties "
        f"`{p.get('selection_ties')}`); reported: {', '.join(f'`{r}`' for r in p.get('report') or [])}",
        f"- deltas: {', '.join('Δ' + d for d in p.get('delta') or [])}",
    ]
    if p.get("monitor"):
        protocol.append(f"- monitor: `{p['monitor']}`")
    paper = s.paper
    return "\n".join([
        f"# `{name}`", "",
        _comment(cfg_path), "",
        f"Module `{s.module}` · config `configs/benchmark/{name}.yaml` · "
        f"{'needs a GPU' if s.config.get('needs_gpu') else 'runs on a CPU'} · "
        f"{len(s.tasks)} tasks" + (f" · paper table: {paper.title}" if paper else ""), "",
        f"Run it: `python -m mtl.train benchmark={name} method=db_mtl`", "",
        "## Tasks and metrics", "",
        *rows, "",
        f"STL reference: {s.reference_source or 'none'}", "",
        "## Protocol", "",
        *protocol, "",
        "[All benchmarks](../benchmarks.md)", "",
    ])


def _nav_section(nav: list, page: str, title: str, children: list) -> None:
    """Turn the nav entry of `page` into a section: the page first, then the generated ones."""
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and list(entry.values())[0] == page:
            nav[i] = {list(entry)[0]: [{title: page}, *children]}
            return
    nav.append({title: [page, *children]})


def on_config(config, **kwargs):
    nav = config["nav"]
    _nav_section(nav, "methods.md", "Overview", [{n: f"{METHOD_DIR}/{n}.md"} for n in method_names()])
    _nav_section(nav, "benchmarks.md", "Overview", [{n: f"{BENCH_DIR}/{n}.md"} for n in benchmark_names()])
    return config


def on_files(files, config, **kwargs):
    for name in method_names():
        files.append(File.generated(config, f"{METHOD_DIR}/{name}.md", content=method_page(name)))
    for name in benchmark_names():
        files.append(File.generated(config, f"{BENCH_DIR}/{name}.md", content=benchmark_page(name)))
    return files


if __name__ == "__main__":  # print one page: python mkdocs_hooks.py method db_mtl
    import sys

    kind, name = sys.argv[1:3]
    print(method_page(name) if kind == "method" else benchmark_page(name))
