"""Equal tuning budget (issue #21, item 5): the same number of trials for every method, chosen on the
validation split only, with Hydra's Optuna sweeper; then the best setting trained on the seeds.

    python scripts/tune.py --method db_mtl --bench synthetic --trials 8 [--seeds 0,1,2] [overrides ...]
    make tune METHOD=db_mtl BENCH=synthetic TRIALS=8

1. The study: `python -m mtl.campaigns.tune_trial -m experiment=tune benchmark=<b> method=<m>
   [+tune=<m>] hydra.sweeper.n_trials=<k>` (configs/experiment/tune.yaml: TPE sampler with seed 0,
   one trial at a time, maximise). The search space is the learning rate
   (`benchmark.protocol.optimizer.lr`, log-uniform 1e-4..1e-2, the same for every method) plus the
   method's own tunables in configs/tune/<method>.yaml, if it has one (the one place a method's
   space lives; tests/test_tune.py checks each key is a declared hyperparameter of the method and
   each range lies inside what its spec accepts). Trials train seed `--trial-seed` (0) under
   <out>/runs (default results/tune/runs), one run dir per setting, so tables never list them.
2. The objective of a trial is the validation Δp (against the benchmark's reference) of the epoch
   the protocol's selection rule picks; the rule must be best_val (which reads validation only), so a
   benchmark without a validation split (NYUv2, Cityscapes: best_test) is refused rather than tuned
   on test. The test split is never read by the study.
3. The summary: <out>/<bench>/<method>.yaml (best parameters, best value, trials) and
   <out>/<bench>/<method>_trials.csv (one row per trial: parameters, validation Δp).
4. The tuned row: the best setting trained on --seeds into the run store (run.tag `_tuned<k>`), so
   `make tables` shows it beside the method's default row, labelled "<method> tuned (k trials, val)".

Relaunch-safe like every workflow: the seeded study replays the same trials (same history, same
suggestions), the trainer skips finished trials and resumes an interrupted one, and the tuned runs
are skipped when finished. Tuned runs left by a different best setting (another search space, say)
stop the workflow with their names instead of being reused silently.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from mtl.campaigns.workflows import PROJECT, Group, execute, report_failures
from mtl.config.compose import CONFIG_DIR, compose
from mtl.errors import InvalidCombination, MTLError

TUNE_DIR = Path(CONFIG_DIR) / "tune"
LR_KEY = "benchmark.protocol.optimizer.lr"
TUNED_TAG = "_tuned{k}"


def trial_tag(values: dict) -> str:
    """`_trial-<8 hex>` from the tuned values (sorted keys, JSON): one run dir per setting."""
    text = json.dumps({k: values[k] for k in sorted(values)}, sort_keys=True, default=str)
    return "_trial-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def search_space(method: str) -> dict[str, str]:
    """The method's own tunables, `key: sweep expression` (configs/tune/<method>.yaml; {} if none)."""
    path = TUNE_DIR / f"{method}.yaml"
    return dict(yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def objective(run_dir: str | Path) -> float:
    """Validation Δp of the epoch the run's selection rule picked (best_val: chosen on validation)."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("selection") != "best_val":
        raise InvalidCombination(f"{run_dir}: selection {summary.get('selection')!r} is not best_val; a tuning "
                         f"objective must be chosen on validation only")
    epoch = summary["selected_epoch"]
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("epoch") == epoch:
            value = rec.get("val_delta_p", math.nan)
            return float(value) if value is not None else math.nan
    raise ValueError(f"{run_dir}: metrics.jsonl has no epoch {epoch}")


def check_benchmark(benchmark: str, method: str, overrides: list[str]) -> None:
    cfg = compose([f"benchmark={benchmark}", f"method={method}", *overrides])
    selection = cfg.benchmark.protocol.selection
    if selection != "best_val":
        raise InvalidCombination(f"benchmark {benchmark} selects epochs by {selection!r}, not on a validation split; "
                         f"tuning there would choose on test. Tune on a benchmark with a val split "
                         f"(synthetic, qm9, qm9_small, office31, officehome)")


def study_command(method: str, benchmark: str, trials: int, study_dir: Path, trial_root: Path, trial_seed: int,
                  overrides: list[str]) -> list[str]:
    extra = [f"+tune={method}"] if (TUNE_DIR / f"{method}.yaml").exists() else []
    return [sys.executable, "-m", "mtl.campaigns.tune_trial", "-m", "experiment=tune", f"benchmark={benchmark}",
            f"method={method}", *extra, f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={study_dir}",
            f"seed={trial_seed}", *overrides, f"run.root={trial_root}"]


def _same_package_env() -> dict[str, str]:
    """The environment with this `mtl` package's folder first on PYTHONPATH: the study process
    imports the same code as this one (a work tree beside an editable install, say)."""
    import os

    import mtl

    env = dict(os.environ)
    root = str(Path(mtl.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def read_trials(study_dir: Path, trials: int) -> pd.DataFrame:
    rows = []
    for i in range(trials):
        p = study_dir / str(i) / "trial.json"
        if p.exists():
            rec = json.loads(p.read_text())
            rows.append({"trial": rec["trial"], **rec["params"], "val_delta_p": rec["val_delta_p"],
                         "run_dir": _relative(rec["run_dir"])})
    return pd.DataFrame(rows)


def _relative(path: str) -> str:
    """`path` relative to the working directory when it lies inside it (committed CSVs name no home)."""
    p, here = Path(path).resolve(), Path.cwd().resolve()
    return str(p.relative_to(here)) if p.is_relative_to(here) else str(p)


def _fmt(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def check_tuned_runs(benchmark: str, method: str, tag: str, best: dict, seeds: list[int],
                     overrides: list[str]) -> None:
    """Finished tuned runs must hold the best setting found now (else the table would mix settings)."""
    from mtl.report.runs import read_config

    stale = []
    for s in seeds:
        cfg = compose([f"benchmark={benchmark}", f"method={method}", f"run.tag={tag}", f"seed={s}", *overrides])
        stored = read_config(cfg.run.dir)
        if not stored:
            continue
        diff = {k: stored.get(f"config.{k}") for k, v in best.items()
                if not _same(stored.get(f"config.{k}"), v)}
        if diff:
            stale.append(f"{cfg.run.dir} ({', '.join(f'{k}={v}' for k, v in diff.items())})")
    if stale:
        raise InvalidCombination(f"tuned runs with another setting than this study's best: {'; '.join(stale)}. Delete "
                         f"them (or pass run.force=true) to train the new best")


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def tune(method: str, benchmark: str, trials: int, *, seeds: list[int], out: str | Path = "results/tune",
         trial_seed: int = 0, launcher: str = "local", overrides: list[str] = (), train_best: bool = True
         ) -> tuple[dict, pd.DataFrame, list[Path], int]:
    if trials < 1:
        raise InvalidCombination(f"--trials must be >= 1, got {trials}")
    overrides = list(overrides)
    check_benchmark(benchmark, method, overrides)
    out = Path(out).resolve()
    study_dir = out / benchmark / method / f"study{trials}"
    cmd = study_command(method, benchmark, trials, study_dir, out / "runs", trial_seed, overrides)
    print("[tune] " + " ".join(cmd[1:]), flush=True)
    rc = subprocess.run(cmd, cwd=PROJECT, env=_same_package_env()).returncode
    if rc != 0:
        return {}, pd.DataFrame(), [], report_failures([(cmd, f"the study exited with status {rc}")])
    results = OmegaConf.to_container(OmegaConf.load(study_dir / "optimization_results.yaml"))
    best = dict(results["best_params"])
    table = read_trials(study_dir, trials)
    shared = yaml.safe_load((Path(CONFIG_DIR) / "experiment" / "tune.yaml").read_text())["hydra"]["sweeper"]
    space = {**shared["params"], **search_space(method)}
    tag = TUNED_TAG.format(k=trials)
    summary = {"method": method, "benchmark": benchmark, "trials": trials, "trial_seed": trial_seed,
               "objective": "val Δp of the epoch selected on validation (best_val); test never read",
               "sampler": f"optuna TPESampler(seed={shared['sampler']['seed']}), "
                          f"{shared['sampler']['n_startup_trials']} random start-up trials",
               "search_space": space, "overrides": overrides,
               "best_params": best, "best_value": float(results["best_value"]),
               "tuned_runs": f"run.tag={tag}, seeds {','.join(map(str, seeds))}"}
    outdir = out / benchmark
    paths = [outdir / f"{method}.yaml", outdir / f"{method}_trials.csv"]
    paths[0].write_text(yaml.safe_dump(summary, sort_keys=False, allow_unicode=True))
    table.to_csv(paths[1], index=False)
    failures = []
    if train_best and seeds:
        best_overrides = [f"{k}={_fmt(v)}" for k, v in best.items()]
        check_tuned_runs(benchmark, method, tag, best, seeds, [*best_overrides, *overrides])
        group = Group([f"benchmark={benchmark}", f"method={method}", *best_overrides, f"run.tag={tag}"],
                      {"seed": [str(s) for s in seeds]})
        failures = execute([group], launcher, extra=overrides)
    return summary, table, paths, report_failures(failures)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--trials", type=int, required=True, help="trials of the study (the same for every method)")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the tuned runs (comma list; empty: none)")
    ap.add_argument("--trial-seed", type=int, default=0, help="the seed every trial trains (default 0)")
    ap.add_argument("--out", default="results/tune")
    ap.add_argument("--launcher", default="local", help="launcher of the tuned runs (the study runs locally)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for trials and tuned runs")
    args = ap.parse_intermixed_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    try:
        summary, table, paths, rc = tune(args.method, args.bench, args.trials, seeds=seeds, out=args.out,
                                         trial_seed=args.trial_seed, launcher=args.launcher,
                                         overrides=args.overrides)
    except MTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary:
        print(table.drop(columns=["run_dir"]).to_string(index=False))
        print(f"best of {args.trials} trials (val Δp {summary['best_value']:+.3f}): "
              + ", ".join(f"{k}={v}" for k, v in summary["best_params"].items()))
        print("written:", ", ".join(map(str, paths)))
    return rc
