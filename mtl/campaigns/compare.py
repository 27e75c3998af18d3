"""Test a (new) method against the stored baselines under a benchmark's protocol.

    python scripts/compare.py --method my_method --bench nyuv2 [--seeds 0,1,2] [--launcher slurm] [overrides ...]
    python scripts/compare.py --method db_mtl --bench qm9 --no-run     # rank existing runs only

Trains `method=<name>` for every seed (finished runs are skipped), then ranks its mean Δp (against the
benchmark's STL reference) among the baselines: our own runs of the other methods when there are any
(--against ours), else the paper's table rows (--against paper). Also prints the mean rank over
metrics (MR) among the same rows when the baselines have per-metric numbers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from mtl.benchmarks import spec
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
        rows = pd.DataFrame({"method": base["method"], "delta_p": base["delta_p_paper"], "source": "paper"})
        vals = base[[f"{k}_paper" for k in keys]].set_axis(keys, axis=1)
    else:
        rows = pd.DataFrame({"method": ours["method"], "delta_p": ours["delta_p"],
                             "source": [f"ours ({int(s)} seeds)" for s in ours["seeds"]]})
        vals = ours[keys]
    mine = me.iloc[0]
    rows = pd.concat([rows, pd.DataFrame([{"method": f"{mine['method']}  <-- new", "delta_p": mine["delta_p"],
                                            "source": f"ours ({int(mine['seeds'])} seeds)"}])], ignore_index=True)
    vals = pd.concat([vals, me[keys]], ignore_index=True)
    rows["mr"] = mean_ranks(vals.reset_index(drop=True), info).to_numpy()
    rows = rows.sort_values("delta_p", ascending=False, na_position="last").reset_index(drop=True)
    rows.index = rows.index + 1
    return rows, against


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
    df = build_table(args.bench, args.root, info=info, include_tags=bool(tag))
    rows, source = ranking(df, name, args.against, info.keys, info)
    pos = int(rows.index[rows["method"].str.endswith("<-- new")][0])
    me = df[df["name"] == name].iloc[0]
    std = f" ± {me['delta_p_std']:.2f}" if me["seeds"] > 1 else ""
    print(f"\n{args.bench}: {name} Δp = {me['delta_p']:+.2f}{std} % over {int(me['seeds'])} seed(s); "
          f"rank {pos} of {len(rows)} by Δp against {source} baselines\n")
    print(rows.to_string(formatters={"delta_p": "{:+.2f}".format, "mr": "{:.2f}".format}))
    return rc

