"""Test a (new) method against the stored baselines under a benchmark's protocol.

    python scripts/compare.py --method my_method --bench nyuv2 [--seeds 0,1,2] [--launcher slurm] [overrides ...]
    python scripts/compare.py --method db_mtl --bench qm9 --no-run     # rank existing runs only

Trains `method=<name>` for every seed (finished runs are skipped), then ranks its mean Δp (against the
benchmark's STL reference) among the baselines: our own runs of the other methods when there are any
(--against ours), else the paper's table rows (--against paper). Also prints the mean rank over
metrics (MR) among the same rows when the baselines have per-metric numbers.

Then, against every baseline with our own runs, the paired comparison by seed (same seed = same
initial weights and batch order): per-seed Δp difference (new − baseline), its 95 % t-interval, the
paired t-test, the Wilcoxon signed-rank test from 6 common seeds, Holm's correction across the
baselines, the verdict (better / worse / no detectable difference at n seeds) and the seed planner:
how many seeds would detect the observed gap, and a gap of --delta points, with 80 % power
(mtl.scoring.stats; docs/statistics.md).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from mtl.benchmarks import spec
from mtl.scoring import stats
from mtl.report.tables import build_table, mean_ranks
from mtl.campaigns.workflows import one_line_errors, Group, execute, report_failures


def ranking(df: pd.DataFrame, name: str, against: str, keys: list[str], info) -> tuple[pd.DataFrame, str]:
    """Table of (method, Δp, MR, source) with the candidate `name` among the baselines, best first."""
    me = df[df["name"] == name]
    if me.empty or me.iloc[0]["seeds"] == 0:
        raise RuntimeError(f"no finished runs of {name!r}; nothing to compare")
    others = df[(df["name"] != name) & (df["name"] != "stl")]
    ours = others[others["seeds"] > 0]
    if against == "auto":
        against = "ours" if len(ours) else ("paper" if "delta_p_paper" in df else "ours")
    if against == "paper":
        if "delta_p_paper" not in df:
            raise RuntimeError(f"{df.attrs['benchmark']} has no paper table; use --against ours")
        base = others.dropna(subset=["delta_p_paper"])
        pm = base["delta_p_paper_pm"] if "delta_p_paper_pm" in base else pd.Series(math.nan, index=base.index)
        rows = pd.DataFrame({"method": base["method"], "delta_p": base["delta_p_paper"],
                             "interval": [f"± {v:.2f} (paper std)" if v == v else "" for v in pm],
                             "source": "paper"})
        vals = base[[f"{k}_paper" for k in keys]].set_axis(keys, axis=1)
    else:
        rows = pd.DataFrame({"method": ours["method"], "delta_p": ours["delta_p"],
                             "interval": [_interval_text(r) for _, r in ours.iterrows()],
                             "source": [f"ours ({int(s)} seeds)" for s in ours["seeds"]]})
        vals = ours[keys]
    mine = me.iloc[0]
    rows = pd.concat([rows, pd.DataFrame([{"method": f"{mine['method']}  <-- new", "delta_p": mine["delta_p"],
                                            "interval": _interval_text(mine),
                                            "source": f"ours ({int(mine['seeds'])} seeds)"}])], ignore_index=True)
    vals = pd.concat([vals, me[keys]], ignore_index=True)
    rows["mr"] = mean_ranks(vals.reset_index(drop=True), info).to_numpy()
    rows = rows.sort_values("delta_p", ascending=False, na_position="last").reset_index(drop=True)
    rows.index = rows.index + 1
    return rows, against


def check_same_protocol(root, bench: str, name: str, baselines: list[str]) -> None:
    """Raise MixedSettings if a baseline was trained under other result-changing settings than the
    candidate `name`, method hyperparameters aside (e.g. other epochs): a ranking compares methods
    under one protocol."""
    from mtl.errors import MixedSettings
    from mtl.report.runs import describe_differences, read_runs, result_settings, setting_differences

    df = read_runs(root, bench)
    if df.empty:
        return
    protocol = lambda row: {k: v for k, v in result_settings(row).items()  # noqa: E731
                            if not k.startswith("method.") and k != "grad_engine"}
    mine = [protocol(r) for _, r in df[df["method"] == name].iterrows()]
    if not mine:
        return
    ref = mine[0]
    odd: dict[str, dict[str, list]] = {}
    for _, r in df[df["method"].isin(baselines)].iterrows():
        for key, values in setting_differences({name: ref, r["method"]: protocol(r)}).items():
            for value, who in values.items():
                odd.setdefault(key, {}).setdefault(value, [])
                odd[key][value] += [w for w in who if w not in odd[key][value]]
    if odd:
        raise MixedSettings(
            f"{bench}: {name} and the baselines were trained under different protocol settings "
            f"({describe_differences(odd, what='run')}); a ranking compares methods under one protocol. Train "
            f"{name} with the baselines' settings, re-run the baselines with its settings, or rank against the "
            f"paper with --against paper")


def _interval_text(row: pd.Series) -> str:
    if row["seeds"] == 1:
        return stats.NO_INTERVAL
    return f"[{row['delta_p_lo']:+.2f}, {row['delta_p_hi']:+.2f}]" if row["seeds"] > 1 else ""


def paired_report(df: pd.DataFrame, name: str, delta: float = 2.0) -> tuple[pd.DataFrame, str]:
    """The paired comparison of `name` against every other MTL row with runs (Δp per seed from
    build_table), Holm-corrected across them, and its printed text (table, verdicts, seed plan)."""
    seeds = df.attrs["seed_delta_p"]
    mine = seeds.get(name, {})
    names = dict(zip(df["name"], df["method"]))
    base = {names[n]: v for n, v in seeds.items() if n not in (name, "stl") and v}
    if not base:
        return pd.DataFrame(), "No baseline has our own runs: paired comparisons need runs of the baselines on the same seeds."
    res = stats.compare_to_baselines(mine, base)  # seeds_needed: for the observed gap
    plan_alpha = res.attrs["plan_alpha"]
    res["seeds_for_delta"] = [stats.seeds_needed(delta, sd, alpha=plan_alpha).seeds for sd in res["diff_sd"]]

    def p(x: float) -> str:
        return "—" if x != x else f"{x:.3f}"

    def n_or_dash(x) -> str:
        return "—" if x is None or x != x else str(int(x))

    out = pd.DataFrame({
        "baseline": res["baseline"], "seeds": res["n"],
        "Δp diff [95% CI]": [r.interval if r.n >= 2 else (f"{r.diff:+.2f} ({stats.NO_INTERVAL})" if r.n else "—")
                             for r in res.itertuples()],
        "paired t p": [p(x) for x in res["p"]], "Holm p": [p(x) for x in res["p_holm"]],
        "Wilcoxon p": [p(x) if x == x else "n<6" for x in res["p_wilcoxon"]],
        "verdict": res["verdict"],
        "seeds for gap": [n_or_dash(x) for x in res["seeds_needed"]],
        f"seeds for {delta:g} pts": [n_or_dash(x) for x in res["seeds_for_delta"]]})
    lines = [f"Paired by seed: Δp of {names.get(name, name)} minus the baseline's on the same seeds (positive = "
             f"{names.get(name, name)} better); paired t-test, Holm-corrected over {res.attrs['tests']} baseline(s), "
             f"α = {res.attrs['alpha']:g}. Wilcoxon signed-rank: from {stats.min_seeds_wilcoxon()} common seeds.",
             "", out.to_string(index=False), ""]
    for r in res.itertuples():
        lines.append(f"  {names.get(name, name)} vs {r.baseline}: {r.verdict}")
    sd = res["diff_sd"].dropna()
    if len(sd):
        lines.append(f"\nSeed plan (80 % power, two-sided paired t at α = {plan_alpha:.3g}, the Holm level of the "
                     f"first test; SD of the paired differences as observed, a planning value from few seeds): "
                     f"'seeds for gap' detects the observed mean difference, 'seeds for {delta:g} pts' a difference of "
                     f"{delta:g} Δp points.")
    else:
        lines.append("\nSeed plan: needs >= 2 common seeds with some baseline to estimate the spread.")
    return res, "\n".join(lines)


def config_names(group: str) -> list[str]:
    """Names of the Hydra configs in configs/<group>/ (method or benchmark)."""
    from mtl.config.compose import CONFIG_DIR

    return sorted(p.stem for p in Path(CONFIG_DIR, group).glob("*.yaml"))


@one_line_errors
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, help="method config name (configs/method/<name>.yaml)")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--launcher", default="local")
    ap.add_argument("--against", default="auto", choices=["auto", "ours", "paper"])
    ap.add_argument("--root", default="results/runs", help="where runs are read from (match run.root)")
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--delta", type=float, default=2.0, help="Δp gap (points) the seed planner plans for")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides (e.g. method.beta=0.5 run.tag=_b05)")
    args = ap.parse_intermixed_args(argv)
    # --no-run ranks stored runs, whose folder need not be a method config (e.g. a tagged variant)
    checks = [("benchmark", args.bench)] + ([] if args.no_run else [("method", args.method)])
    for group, value in checks:
        known = config_names(group)
        if value not in known:  # Hydra would print its whole search path and a traceback instead
            print(f"error: {'--method' if group == 'method' else '--bench'} {value!r}: there is no "
                  f"configs/{group}/{value}.yaml; choose one of {', '.join(known)}", file=sys.stderr)
            return 2
    rc = 0
    if not args.no_run:
        group = Group([f"benchmark={args.bench}", f"method={args.method}"], {"seed": args.seeds.split(",")})
        rc = report_failures(execute([group], args.launcher, extra=args.overrides))
    tag = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("run.tag=")), "")
    name = f"{args.method}{tag}"
    info = spec(args.bench)
    from mtl.errors import MTLError

    try:
        df = build_table(args.bench, args.root, info=info, include_tags=bool(tag))
        rows, source = ranking(df, name, args.against, info.keys, info)
        if source == "ours":
            check_same_protocol(args.root, args.bench, name, [n for n in df["name"] if n not in (name, "stl")])
    except MTLError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    pos = int(rows.index[rows["method"].str.endswith("<-- new")][0])
    me = df[df["name"] == name].iloc[0]
    ci = (f" [{me['delta_p_lo']:+.2f}, {me['delta_p_hi']:+.2f}] (95 % t-interval)" if me["seeds"] > 1
          else f" ({stats.NO_INTERVAL})")
    print(f"\n{args.bench}: {name} Δp = {me['delta_p']:+.2f} %{ci} over {int(me['seeds'])} seed(s); "
          f"rank {pos} of {len(rows)} by mean Δp against {source} baselines (a rank, not a test: see the paired "
          f"comparison below)\n")
    print(rows.to_string(formatters={"delta_p": "{:+.2f}".format, "mr": "{:.2f}".format}))
    _, text = paired_report(df, name, args.delta)
    print("\n" + text)
    return rc

