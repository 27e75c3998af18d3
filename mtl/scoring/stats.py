"""Statistics over seeds: intervals, paired comparisons, a seed planner, reproduction verdicts and
rank stability (issue #21). Pure functions of numbers (numpy, scipy, pandas, statsmodels); nothing
here reads runs, so tables, compare, sweeps and the demo share one implementation.

Conventions
- A *seed* fixes a run's initial weights and batch order, so two methods run with the same seed are
  a paired design (`paired_comparison`); runs of one method over seeds are its sample.
- Intervals are 95 % by default. The default is the **t-interval** over seeds (mean ± t_{n-1} · s/√n,
  s with ddof=1): with the 2-5 seeds MTL papers report, a percentile bootstrap of the mean is too
  narrow (its interval lies inside the sample's range and ignores that s itself is estimated from
  n-1 degrees of freedom; with 3 seeds it has 10 distinct resampled means), while the t-interval is
  exact for normal seed noise and conservative enough when it is not. `bootstrap_interval` is the
  alternative for many seeds or clearly skewed values (scipy.stats.bootstrap, percentile method).
- One seed has no interval: `Interval.text()` says "1 seed: no interval" instead of a bare number.
- Verdict words: "better", "worse", "no detectable difference at n seeds" (paired t-test, Holm
  corrected across the baselines compared, two-sided α = 0.05). "No detectable difference" is not
  "equal": `seeds_needed` says how many seeds would detect a given gap.

Libraries: scipy.stats (t, ttest_rel, wilcoxon, ttest_ind_from_stats, bootstrap, friedmanchisquare,
studentized_range), statsmodels (multipletests for Holm, TTestPower for the planner). The bootstrap
over seeds of a method ranking and the Nemenyi critical difference (Demšar 2006) are a few lines
written here: no kept library computes them from per-seed scores of a table.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80
NO_INTERVAL = "1 seed: no interval"

Samples = Mapping[int, float]  # seed -> value


def _clean(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                     dtype=float)
    return arr[np.isfinite(arr)]


def _fmt(x: float, decimals: int, signed: bool) -> str:
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


# --- intervals over seeds ------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """Mean over n seeds with its interval [low, high] (NaN when n < 2); `kind` is "t",
    "bootstrap" or "none" (one seed, or no value); `sd` uses ddof=1 (NaN for n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    kind: str
    sd: float = math.nan
    level: float = LEVEL

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and not math.isnan(self.low)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2 if self.has_interval else math.nan

    def contains(self, x: float) -> bool:
        return self.has_interval and self.low <= x <= self.high

    def text(self, decimals: int = 2, signed: bool = False, *, note: bool = True) -> str:
        """'-25.70 [-28.10, -23.30]'; one seed: '-25.70 (1 seed: no interval)' (or the bare value
        with note=False, for a table that footnotes it); no value: '—'."""
        if self.n == 0 or math.isnan(self.mean):
            return "—"
        m = _fmt(self.mean, decimals, signed)
        if not self.has_interval:
            return f"{m} ({NO_INTERVAL})" if note and self.n == 1 else m
        return f"{m} [{_fmt(self.low, decimals, signed)}, {_fmt(self.high, decimals, signed)}]"

    def __str__(self) -> str:
        return self.text()


def t_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean over seeds (scipy.stats.ttest_1samp(...).confidence_interval).

    >>> t_interval([1, 2, 3, 4, 5]).text(3)
    '3.000 [1.037, 4.963]'
    >>> t_interval([7.0]).text(1)
    '7.0 (1 seed: no interval)'
    """
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "none", level=level)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, "none", level=level)
    sd = float(x.std(ddof=1))
    if sd == 0:  # every seed gave the same number: the interval is that number
        return Interval(mean, mean, mean, n, "t", 0.0, level)
    ci = st.ttest_1samp(x, 0.0).confidence_interval(level)
    return Interval(mean, float(ci.low), float(ci.high), n, "t", sd, level)


def bootstrap_interval(values: Iterable[float], level: float = LEVEL, *, n_resamples: int = 9999,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap). Too narrow for
    a handful of seeds (see the module docstring); use it with many seeds or skewed values."""
    x = _clean(values)
    n = len(x)
    if n < 2:
        return Interval(float(x.mean()) if n else math.nan, math.nan, math.nan, n, "none", level=level)
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd == 0:
        return Interval(mean, mean, mean, n, "bootstrap", 0.0, level)
    res = st.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
                       random_state=np.random.default_rng(seed))
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n,
                    "bootstrap", sd, level)


def seed_interval(values: Iterable[float], level: float = LEVEL, kind: str = "t") -> Interval:
    """The interval the tables report: kind "t" (default) or "bootstrap"."""
    if kind == "t":
        return t_interval(values, level)
    if kind == "bootstrap":
        return bootstrap_interval(values, level)
    raise ValueError(f"interval kind must be 't' or 'bootstrap', got {kind!r}")


# --- paired comparisons by seed ------------------------------------------------------------------
def min_seeds_wilcoxon(alpha: float = ALPHA) -> int:
    """Fewest paired seeds at which the exact two-sided Wilcoxon signed-rank test can reach p < alpha
    (its smallest p-value is 2 / 2^n: 6 seeds for α = 0.05).

    >>> min_seeds_wilcoxon()
    6
    """
    n = 1
    while 2.0 / 2 ** n >= alpha:
        n += 1
    return n


def verdict_word(mean_diff: float, p: float, n: int, alpha: float = ALPHA) -> str:
    """'better' / 'worse' (p < alpha, sign of the mean difference, candidate − baseline already
    oriented so that positive is better), else 'no detectable difference at n seeds'.

    >>> verdict_word(2.0, 0.01, 3), verdict_word(-2.0, 0.01, 3), verdict_word(2.0, 0.2, 3)
    ('better', 'worse', 'no detectable difference at 3 seeds')
    >>> verdict_word(2.0, float('nan'), 1)
    '1 seed: no test'
    """
    if n < 2 or math.isnan(p):
        return "1 seed: no test" if n == 1 else ("no common seeds" if n == 0 else f"no test at {n} seeds")
    if p < alpha and mean_diff > 0:
        return "better"
    if p < alpha and mean_diff < 0:
        return "worse"
    return f"no detectable difference at {n} seeds"


@dataclass
class Paired:
    """Candidate − baseline per common seed (oriented: positive = candidate better)."""

    seeds: list[int]
    diffs: np.ndarray
    interval: Interval
    t: float
    p_t: float
    p_wilcoxon: float
    wilcoxon_note: str
    only_candidate: list[int] = field(default_factory=list)
    only_baseline: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.seeds)


def paired_comparison(candidate: Samples, baseline: Samples, *, higher_is_better: bool = True,
                      level: float = LEVEL, alpha: float = ALPHA) -> Paired:
    """Per-seed differences on the seeds both have, their t-interval, the paired t-test
    (scipy.stats.ttest_rel) and, with at least `min_seeds_wilcoxon(alpha)` seeds, the exact
    Wilcoxon signed-rank test (scipy.stats.wilcoxon); fewer seeds: p_wilcoxon NaN and a note."""
    common = sorted(s for s in candidate if s in baseline
                    and np.isfinite(candidate[s]) and np.isfinite(baseline[s]))
    sign = 1.0 if higher_is_better else -1.0
    a = np.array([candidate[s] for s in common], dtype=float)
    b = np.array([baseline[s] for s in common], dtype=float)
    d = sign * (a - b)
    n = len(d)
    t = p = pw = math.nan
    if n >= 2:
        sd = float(d.std(ddof=1))
        if sd == 0:  # identical differences on every seed: no noise to test against
            t, p = (0.0, 1.0) if d.mean() == 0 else (math.copysign(math.inf, d.mean()), 0.0)
        else:
            res = st.ttest_rel(sign * a, sign * b)
            t, p = float(res.statistic), float(res.pvalue)
    need = min_seeds_wilcoxon(alpha)
    if n >= need and np.any(d != 0):
        pw = float(st.wilcoxon(d).pvalue)
        note = "exact" if n <= 50 else "normal approximation"
    else:
        note = (f"not run: {n} seed(s), the signed-rank test needs >= {need} to reach p < {alpha:g}"
                if n < need else "not run: every difference is 0")
    return Paired(common, d, t_interval(d, level), t, p, pw, note,
                  sorted(set(candidate) - set(common)), sorted(set(baseline) - set(common)))


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels multipletests, method "holm"); NaN entries stay NaN and do
    not count towards the number of tests.

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
    return out


def compare_to_baselines(candidate: Samples, baselines: Mapping[str, Samples], *, higher_is_better: bool = True,
                         level: float = LEVEL, alpha: float = ALPHA, delta: float | None = None) -> pd.DataFrame:
    """One row per baseline: n paired seeds, mean difference (candidate − baseline, positive =
    candidate better) and its interval, paired-t p, Holm-adjusted p across the baselines, Wilcoxon p
    (or why not), the verdict, and the seeds needed to detect `delta` (default: the observed |mean
    difference|) with 80 % power at α / (number of tests) — the level Holm applies to the smallest
    p-value, so the plan holds whichever baseline it is."""
    rows = []
    for name, base in baselines.items():
        pr = paired_comparison(candidate, base, higher_is_better=higher_is_better, level=level, alpha=alpha)
        rows.append({"baseline": name, "n": pr.n, "seeds": ",".join(map(str, pr.seeds)),
                     "diff": pr.interval.mean, "diff_low": pr.interval.low, "diff_high": pr.interval.high,
                     "diff_sd": pr.interval.sd, "interval": pr.interval.text(2, True), "t": pr.t, "p": pr.p_t,
                     "p_wilcoxon": pr.p_wilcoxon, "wilcoxon": pr.wilcoxon_note})
    df = pd.DataFrame(rows, columns=["baseline", "n", "seeds", "diff", "diff_low", "diff_high", "diff_sd",
                                     "interval", "t", "p", "p_wilcoxon", "wilcoxon"])
    df["p_holm"] = holm(df["p"].to_numpy(dtype=float), alpha) if len(df) else []
    df["verdict"] = [verdict_word(r.diff, r.p_holm, int(r.n), alpha) for r in df.itertuples()]
    tests = int(df["p"].notna().sum()) if len(df) else 0
    plan_alpha = alpha / max(tests, 1)
    df["seeds_needed"] = [seeds_needed(abs(r.diff) if delta is None else delta, r.diff_sd, alpha=plan_alpha).seeds
                          for r in df.itertuples()]
    df.attrs.update(alpha=alpha, plan_alpha=plan_alpha, tests=tests, delta=delta)
    return df


# --- seed planner -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Seeds needed (None when it cannot be planned, see `why`) for a paired t-test to detect a
    mean difference `delta` given the SD of paired differences `sd`."""

    seeds: int | None
    delta: float
    sd: float
    alpha: float
    power: float
    why: str = ""

    def text(self, decimals: int = 1) -> str:
        if self.seeds is None:
            return f"seed plan for {self.delta:.{decimals}f} points: {self.why}"
        return (f"{self.seeds} seeds detect a difference of {self.delta:.{decimals}f} points with "
                f"{self.power:.0%} power (paired t-test, α = {self.alpha:.3g}, SD of paired differences "
                f"{self.sd:.{decimals}f})")


def paired_power(n: int, delta: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs for a true mean difference delta
    (statsmodels TTestPower; the noncentral t with n-1 df and noncentrality delta/sd·√n)."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=abs(delta) / sd, nobs=n, alpha=alpha, alternative="two-sided"))


def seeds_needed(delta: float, sd: float, *, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = 1000) -> Plan:
    """Smallest number of paired seeds (>= 2) whose paired t-test has `power` to detect `delta`
    points when the paired differences have SD `sd` (an observed SD from a few seeds is itself
    uncertain: the plan is a planning value, not a promise).

    >>> seeds_needed(1.0, 1.0).seeds, seeds_needed(0.5, 1.0).seeds
    (10, 34)
    """
    if sd is None or math.isnan(sd):
        return Plan(None, delta, math.nan, alpha, power, "needs >= 2 paired seeds to estimate the spread")
    if not delta or math.isnan(delta):
        return Plan(None, delta, sd, alpha, power, "no difference to detect (δ = 0)")
    if sd == 0:
        return Plan(2, delta, sd, alpha, power)
    for n in range(2, max_seeds + 1):
        if paired_power(n, delta, sd, alpha) >= power:
            return Plan(n, delta, sd, alpha, power)
    return Plan(None, delta, sd, alpha, power, f"more than {max_seeds} seeds")


# --- reproduction verdicts ----------------------------------------------------------------------
REPRO_RULE = ("reproduced = our seeds are consistent with the paper's mean ± std: Welch's t-test from "
              "the summary statistics (scipy.stats.ttest_ind_from_stats, paper std taken as a sample SD over "
              "its n seeds) gives p >= 0.05; without a paper std, the paper's mean lies in our 95 % t-interval; "
              "with one seed of ours, our value lies in the paper's 95 % prediction interval for one new run "
              "(mean ± t_{n-1}·std·√(1+1/n)). 'Reproduced' means not shown to differ at our seed count, "
              "not shown equal.")


@dataclass(frozen=True)
class Reproduction:
    status: str  # reproduced | differs | untested
    p: float
    rule: str  # welch | our interval | paper prediction interval | -
    ours: float
    paper: float
    note: str = ""

    def text(self, decimals: int = 2) -> str:
        gap = f"ours {self.ours:+.{decimals}f} vs paper {self.paper:+.{decimals}f}"
        p = "" if math.isnan(self.p) else f", p = {self.p:.2g}"
        return f"{self.status} ({gap}{p}; {self.rule})" if self.status != "untested" else f"untested ({self.note})"


def reproduction(ours: Iterable[float], paper_mean: float, paper_std: float | None, paper_n: int, *,
                 alpha: float = ALPHA, level: float = LEVEL) -> Reproduction:
    """Whether our runs are consistent with a paper's mean ± std over `paper_n` seeds (REPRO_RULE)."""
    x = _clean(ours)
    n = len(x)
    if paper_mean is None or math.isnan(paper_mean):
        return Reproduction("untested", math.nan, "-", float(x.mean()) if n else math.nan, math.nan,
                            "no paper value")
    if n == 0:
        return Reproduction("untested", math.nan, "-", math.nan, paper_mean, "no runs")
    ours_mean = float(x.mean())
    has_std = paper_std is not None and not math.isnan(paper_std) and paper_n >= 2
    if n >= 2 and has_std:
        sd = float(x.std(ddof=1))
        if sd == 0 and paper_std == 0:
            p = 1.0 if ours_mean == paper_mean else 0.0
        else:
            p = float(st.ttest_ind_from_stats(ours_mean, sd, n, paper_mean, paper_std, paper_n,
                                              equal_var=False).pvalue)
        return Reproduction("reproduced" if p >= alpha else "differs", p, "welch", ours_mean, paper_mean)
    if n >= 2:
        ci = t_interval(x, level)
        ok = ci.contains(paper_mean)
        return Reproduction("reproduced" if ok else "differs", math.nan, "paper mean in our interval",
                            ours_mean, paper_mean)
    if has_std:
        half = st.t.ppf(1 - (1 - level) / 2, paper_n - 1) * paper_std * math.sqrt(1 + 1 / paper_n)
        ok = abs(ours_mean - paper_mean) <= half
        return Reproduction("reproduced" if ok else "differs", math.nan, "1 seed: paper prediction interval",
                            ours_mean, paper_mean)
    return Reproduction("untested", math.nan, "-", ours_mean, paper_mean, "1 seed and no paper std")


def reproduction_line(verdicts: Mapping[str, Reproduction], decimals: int = 2) -> str:
    """'reproduced: k of m methods; differs: A (ours .. vs paper ..), ...; untested: ...' where m
    counts the methods that could be tested (untested: runs but no way to test, e.g. one seed
    against a paper value without std; methods without runs or without a paper value are left out).

    >>> r = {"ew": Reproduction("reproduced", .3, "welch", 1, 1.2), "uw": Reproduction("differs", .01, "welch", 1, 5)}
    >>> reproduction_line(r)
    'reproduced: 1 of 2 methods; differs: uw (ours +1.00 vs paper +5.00)'
    """
    tested = {k: v for k, v in verdicts.items() if v.status != "untested"}
    ok = [k for k, v in tested.items() if v.status == "reproduced"]
    bad = [f"{k} (ours {v.ours:+.{decimals}f} vs paper {v.paper:+.{decimals}f})"
           for k, v in tested.items() if v.status == "differs"]
    line = f"reproduced: {len(ok)} of {len(tested)} methods; differs: {', '.join(bad) if bad else 'none'}"
    untested = [k for k, v in verdicts.items() if v.status == "untested" and v.note not in ("no paper value", "no runs")]
    if untested:
        line += f"; untested: {', '.join(untested)}"
    return line


# --- rank stability ---------------------------------------------------------------------------
def bootstrap_ranks(samples: Mapping[str, Samples], *, higher_is_better: bool = True, n_boot: int = 10000,
                    top: int = 3, seed: int = 0) -> pd.DataFrame:
    """Probability that each method ranks first and in the top `top` when each method's seeds are
    resampled with replacement (its mean over the resample is its score). When every method has the
    same seeds, the seed indices are resampled jointly (the seeds are paired); otherwise each method
    independently. Ties share the place (a tie for first between two methods counts ½ to each).
    A method with one seed keeps its one value. Returns method, seeds, p_first, p_top (sorted by
    p_first, then p_top)."""
    names = [k for k, v in samples.items() if len(_clean(v.values()))]
    if not names:
        return pd.DataFrame(columns=["method", "seeds", "p_first", f"p_top{top}"])
    rng = np.random.default_rng(seed)
    seed_sets = [tuple(sorted(s for s, v in samples[k].items() if np.isfinite(v))) for k in names]
    sign = 1.0 if higher_is_better else -1.0
    if len(set(seed_sets)) == 1:
        seeds = seed_sets[0]
        x = np.array([[samples[k][s] for s in seeds] for k in names], dtype=float)  # methods x seeds
        idx = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        means = x[:, idx].mean(axis=2).T  # n_boot x methods
    else:
        cols = []
        for k, ss in zip(names, seed_sets):
            v = np.array([samples[k][s] for s in ss], dtype=float)
            cols.append(v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1))
        means = np.stack(cols, axis=1)
    score = sign * means
    # rank 1 = best; ties share the average place (scipy.stats.rankdata on -score per bootstrap)
    ranks = st.rankdata(-score, axis=1, method="average")
    best = score.max(axis=1, keepdims=True)
    is_best = score == best
    p_first = (is_best / is_best.sum(axis=1, keepdims=True)).mean(axis=0)
    p_top = (ranks <= top).mean(axis=0) if len(names) > top else np.ones(len(names))
    df = pd.DataFrame({"method": names, "seeds": [len(s) for s in seed_sets], "p_first": p_first,
                       f"p_top{top}": p_top})
    return df.sort_values(["p_first", f"p_top{top}"], ascending=False, ignore_index=True)


def bootstrap_mean_ranks(samples: Mapping[str, np.ndarray], higher_is_better: Sequence[bool], *,
                         n_boot: int = 2000, level: float = LEVEL, seed: int = 0) -> pd.DataFrame:
    """Interval of each method's mean rank over metrics (MR) under a bootstrap over its seeds:
    `samples[method]` is seeds x metrics; per resample, per metric the methods are ranked by their
    mean (1 = best, ties averaged, NaN not ranked) and MR is the mean over metrics. Returns method,
    mr (from the full sample), mr_low, mr_high (percentile interval; NaN for a method with < 2 seeds,
    whose own values do not move — its MR still moves with the others')."""
    names = list(samples)
    rng = np.random.default_rng(seed)
    sign = np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)
    arrays = [np.asarray(samples[k], dtype=float).reshape(-1, len(sign)) for k in names]

    def mr(means: np.ndarray) -> np.ndarray:  # [..., methods, metrics] -> [..., methods]
        r = st.rankdata(-sign * means, axis=-2, method="average", nan_policy="omit")
        return np.nanmean(r, axis=-1)

    empty = np.full(len(sign), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric no method has: NaN, not a warning
        full = mr(np.stack([np.nanmean(a, axis=0) if len(a) else empty for a in arrays]))
        boots = mr(np.stack([np.nanmean(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1) if len(a)
                             else np.broadcast_to(empty, (n_boot, len(sign))) for a in arrays], axis=1))
    q = (1 - level) / 2
    lo, hi = np.nanquantile(boots, q, axis=0), np.nanquantile(boots, 1 - q, axis=0)
    many = np.array([len(a) >= 2 for a in arrays])
    return pd.DataFrame({"method": names, "mr": full, "mr_low": np.where(many, lo, np.nan),
                         "mr_high": np.where(many, hi, np.nan), "seeds": [len(a) for a in arrays]})


@dataclass(frozen=True)
class RankTest:
    """Friedman test over benchmarks and the Nemenyi critical difference of mean ranks."""

    mean_ranks: pd.Series  # method -> mean rank over benchmarks (1 = best), best first
    statistic: float
    p: float
    cd: float
    n_benchmarks: int
    alpha: float

    def text(self) -> str:
        k, n = len(self.mean_ranks), self.n_benchmarks
        ranks = ", ".join(f"{m} {r:.2f}" for m, r in self.mean_ranks.items())
        best = self.mean_ranks.iloc[0]
        tied = [m for m, r in self.mean_ranks.items() if r - best < self.cd]
        p = "n/a" if math.isnan(self.p) else f"{self.p:.2g}"
        return (f"mean ranks over {n} benchmarks ({k} methods): {ranks}. Friedman χ² = {self.statistic:.2f}, "
                f"p = {p}; Nemenyi critical difference {self.cd:.2f} at α = {self.alpha:g}: "
                f"not distinguishable from the best: {', '.join(tied)}")


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference of mean ranks for k methods over n benchmarks (Demšar 2006):
    q_α √(k(k+1)/(6n)), q_α = studentized range quantile (k groups, ∞ df) / √2.

    >>> round(nemenyi_cd(3, 4), 3)
    1.657
    """
    q = st.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def friedman_nemenyi(scores: pd.DataFrame, *, higher_is_better: bool = True, alpha: float = ALPHA) -> RankTest:
    """`scores`: benchmarks (rows) x methods (columns), e.g. mean Δp per benchmark; only methods with
    a value on every benchmark are ranked. Friedman: scipy.stats.friedmanchisquare (needs >= 3
    methods and >= 2 benchmarks, else p is NaN)."""
    full = scores.dropna(axis=1, how="any")
    ranks = full.rank(axis=1, ascending=not higher_is_better, method="average")
    mean_ranks = ranks.mean(axis=0).sort_values()
    k, n = full.shape[1], full.shape[0]
    stat = p = math.nan
    if k >= 3 and n >= 2:
        res = st.friedmanchisquare(*[full[c].to_numpy() for c in full.columns])
        stat, p = float(res.statistic), float(res.pvalue)
    cd = nemenyi_cd(k, n, alpha) if k >= 2 and n >= 1 else math.nan
    return RankTest(mean_ranks, stat, p, cd, n, alpha)
