"""The run store: every reader of finished runs (tables, sweeps, compare, STL reference, demo) goes
through this module. A finished run is <root>/<benchmark>/<method><tag>/seed<s>/ with summary.json
(written by mtl/run/rundir.py) and config.yaml; the files are the source of truth.

`read_runs` gives one DataFrame row per finished run:
  benchmark, method (the folder name, incl. tag), trained (the summary's method), tag, seed, path,
  selection, delta_p, delta_m, wall_time_s, `<task>/<metric>` of the selected epoch (or of another
  reported rule), `delta_p/<task>` (per-task Δp), and the run's config.yaml flattened to
  `config.<dotted.key>` columns (e.g. config.method.beta) so runs can be grouped by hyperparameter.
A damaged summary (not JSON, not an object, a required key missing) is named in one warning line on
stderr and the run is skipped; the other runs are read. `read_metrics` gives a run's epochs
(metrics.jsonl) up to a damaged line, for curves.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mtl.errors import brief
from mtl.run.rundir import CONFIG, METRICS, SUMMARY

# keys every reader needs (tables recompute Δp/Δm from the metrics); callers may require more
SUMMARY_KEYS = ("seed", "metrics")
# keys of the run's identity; config columns are prefixed so they never collide with them
RUN_COLUMNS = ("benchmark", "method", "trained", "tag", "seed", "path")
CONFIG_PREFIX = "config."


def read_summary(path: str | Path, required: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, Any] | None:
    """The parsed summary.json at `path`, or None (with one warning line on stderr naming the file
    and what to do) when it is damaged: not JSON, not an object, or missing a `required` key. Table
    and sweep readers skip such a run and go on with the others."""
    path = Path(path)
    try:
        s = json.loads(path.read_text())
        problem = None if isinstance(s, dict) else f"a JSON {type(s).__name__}, not an object"
        if problem is None:
            missing = [k for k in required if k not in s]
            problem = f"no {', '.join(missing)}" if missing else _type_problem(s)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = brief(err)
    if problem is None:
        return s
    _warn_damaged(path, problem)
    return None


def _warn_damaged(path: Path, problem: str) -> None:
    print(f"[mtl] warning: {path}: damaged summary ({problem}); skipped. Delete it and re-run that run "
          f"(same command, its config is {path.parent / CONFIG}) to write it again", file=sys.stderr)


def _number(v: Any, null: bool = False) -> bool:
    return (v is None and null) or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _metrics_problem(key: str, m: Any) -> str | None:
    if not isinstance(m, dict):
        return f"{key} is a JSON {type(m).__name__}, not an object of tasks"
    for task, values in m.items():
        if not isinstance(values, dict):
            return f"{key}.{task} is a JSON {type(values).__name__}, not an object of metrics"
        for metric, v in values.items():
            if not _number(v, null=True):
                return f"{key}.{task}.{metric} is {v!r}, not a number"
    return None


def _type_problem(s: dict[str, Any]) -> str | None:
    """What is of the wrong type in a parsed summary (a hand edit, another tool's file), or None."""
    if "seed" in s and not (isinstance(s["seed"], int) and not isinstance(s["seed"], bool)):
        return f"seed is {s['seed']!r}, not an integer"
    if "metrics" in s and (problem := _metrics_problem("metrics", s["metrics"])):
        return problem
    for key in ("delta_p", "delta_m", "wall_time_s"):
        if key in s and not _number(s[key], null=True):
            return f"{key} is {s[key]!r}, not a number"
    for key in ("delta_p_per_task", "reported"):
        if key in s and s[key] is not None and not isinstance(s[key], dict):
            return f"{key} is a JSON {type(s[key]).__name__}, not an object"
    for rule, rep in (s.get("reported") or {}).items():
        if not isinstance(rep, dict):
            return f"reported.{rule} is a JSON {type(rep).__name__}, not an object"
        if "metrics" in rep and (problem := _metrics_problem(f"reported.{rule}.metrics", rep["metrics"])):
            return problem
    for key in ("method", "tag", "selection"):
        if key in s and s[key] is not None and not isinstance(s[key], str):
            return f"{key} is {s[key]!r}, not a string"
    return None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs of a run's metrics.jsonl up to its first damaged line (named on stderr): curves
    from the readable epochs beat no figure at all (plots, the demo's diagnostics); [] without one."""
    p = Path(run_dir) / METRICS
    if not p.exists():
        return []
    out = []
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        lines = []
        print(f"[mtl] warning: {p}: unreadable ({type(err).__name__}: {err}); its curves are left out",
              file=sys.stderr)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"a JSON {type(rec).__name__}, not an object")
        except ValueError as err:
            print(f"[mtl] warning: {p}:{n}: damaged line ({err}); its curves show only the {len(out)} epochs before it",
                  file=sys.stderr)
            break
        out.append(rec)
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {dotted.key: value}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.yaml as {config.<dotted.key>: value}; {} when there is none. An unreadable
    one is named in one warning line (the run's results are still read)."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return {}
    try:
        cfg = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if not isinstance(cfg, dict):
            raise ValueError(f"a YAML {type(cfg).__name__}, not a mapping")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as err:
        print(f"[mtl] warning: {path}: damaged config ({brief(err)}); the run is read without its config. "
              f"Delete the run directory and re-run it to write it again", file=sys.stderr)
        return {}
    return flatten(cfg, CONFIG_PREFIX)


def result_settings(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """{dotted key: value} of a read_runs row's result-changing settings: its `config.*` columns
    except those that cannot change results (mtl.run.resume.BOOKKEEPING, the one list of them), the
    seed and the run's own folder keys (run.*); absent and null values are left out."""
    from mtl.run.resume import is_bookkeeping

    out = {}
    for column, value in dict(row).items():
        if not column.startswith(CONFIG_PREFIX):
            continue
        key = column[len(CONFIG_PREFIX):]
        if key == "seed" or key.startswith("run.") or is_bookkeeping(key):
            continue
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[key] = value
    return out


def setting_differences(settings: dict[Any, dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """{key: {value: [run ids]}} for every key on which the runs `settings` ({run id: result_settings})
    disagree (a key a run does not record is not a disagreement: older configs lack newer keys)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for key in sorted({k for s in settings.values() for k in s}):
        values: dict[str, list[Any]] = {}
        for run, s in settings.items():
            if key in s:
                values.setdefault(json.dumps(s[key], sort_keys=True, default=str), []).append(run)
        if len(values) > 1:
            out[key] = values
    return out


def describe_differences(diffs: dict[str, dict[str, list[Any]]], what: str = "seed", limit: int = 4) -> str:
    """`key: v1 (seed 0), v2 (seeds 1, 2); ...` for one error line."""
    parts = []
    for key, values in list(diffs.items())[:limit]:
        per = [f"{v} ({what}{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))})" for v, ids in values.items()]
        parts.append(f"{key}: {', '.join(per)}")
    if len(diffs) > limit:
        parts.append(f"... {len(diffs) - limit} more")
    return "; ".join(parts)


def selected_metrics(summary: dict[str, Any], rule: str | None) -> dict[str, dict[str, float]]:
    """task -> metric -> value at the epoch chosen by `rule` (None: the run's own selection)."""
    if rule is None or rule == summary.get("selection"):
        return summary["metrics"]
    reported = summary.get("reported") or {}
    if rule not in reported:
        raise KeyError(f"run {summary.get('method')} seed {summary.get('seed')} has no selection rule {rule!r} "
                       f"(has {sorted(reported)})")
    return reported[rule]["metrics"]


def read_run(run_dir: str | Path, *, rule: str | None = None, required: tuple[str, ...] = SUMMARY_KEYS,
             config: bool = True) -> dict[str, Any] | None:
    """One finished run as a row (see the module docstring); None if its summary is damaged."""
    run_dir = Path(run_dir)
    s = read_summary(run_dir / SUMMARY, required)
    if s is None:
        return None
    try:
        return _row(run_dir, s, rule, config)
    except (TypeError, ValueError, AttributeError) as err:  # a shape _type_problem does not know yet
        _warn_damaged(run_dir / SUMMARY, brief(err))
        return None


def _row(run_dir: Path, s: dict[str, Any], rule: str | None, config: bool) -> dict[str, Any]:
    folder = run_dir.parent.name
    trained = s.get("method", folder)
    metrics = selected_metrics(s, rule)
    reported = s if rule is None or rule == s.get("selection") else (s.get("reported") or {})[rule]
    row: dict[str, Any] = {
        "benchmark": run_dir.parent.parent.name,  # the config name (qm9_small), as in the run directory
        "method": folder, "trained": trained,
        "tag": s.get("tag", folder[len(trained):] if folder.startswith(trained) else ""),
        "seed": int(s["seed"]), "path": str(run_dir), "selection": rule or s.get("selection"),
        "delta_p": reported.get("delta_p", math.nan), "delta_m": reported.get("delta_m", math.nan),
        "wall_time_s": s.get("wall_time_s", math.nan)}
    for task, values in metrics.items():
        for metric, value in values.items():
            row[f"{task}/{metric}"] = value
    for task, value in (reported.get("delta_p_per_task") or {}).items():
        row[f"delta_p/{task}"] = value
    if config:
        row.update(read_config(run_dir))
    return row


def run_dirs(root: str | Path, benchmark: str | None = None) -> list[Path]:
    """Run directories with a summary.json under <root>/<benchmark or every benchmark>/<folder>/seed<s>/."""
    pattern = f"{benchmark}/*/seed*/{SUMMARY}" if benchmark is not None else f"*/*/seed*/{SUMMARY}"
    return [p.parent for p in sorted(Path(root).glob(pattern))]


def benchmarks_with_runs(root: str | Path) -> list[str]:
    """Benchmarks (folders of `root`) that hold at least one finished run."""
    return sorted({d.parent.parent.name for d in run_dirs(root)})


def read_runs(root: str | Path, benchmark: str | None = None, *, rule: str | None = None,
              required: tuple[str, ...] = SUMMARY_KEYS, config: bool = True) -> pd.DataFrame:
    """Every finished run under `root` (one benchmark or all), one row each, in path order; runs with
    a damaged summary are skipped with one warning line each. `required` adds summary keys a
    reader cannot do without (e.g. ("seed", "metrics", "delta_p", "delta_m"))."""
    rows = [r for d in run_dirs(root, benchmark)
            if (r := read_run(d, rule=rule, required=required, config=config)) is not None]
    return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The `<task>/<metric>` columns of a read_runs frame, in their order."""
    return [c for c in df.columns if "/" in c and not c.startswith(("delta_p/", CONFIG_PREFIX))]


def metrics_of(row: pd.Series | dict[str, Any], keys: list[str]) -> dict[str, dict[str, float]]:
    """task -> metric -> value of one row for `keys` (`task/metric`); absent or NaN cells are left out."""
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        value = row.get(key, math.nan)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            task, metric = key.split("/", 1)
            out.setdefault(task, {})[metric] = float(value)
    return out
