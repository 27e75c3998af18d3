"""mtl.scoring.stats against hand-computed values (issue #21)."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from mtl.scoring import stats as S


# --- intervals -------------------------------------------------------------------------------
def test_t_interval_on_known_samples():
    # mean 3, s = sqrt(2.5), sem = 0.70711, t_{0.975, 4} = 2.776445 -> half-width 1.963243
    ci = S.t_interval([1, 2, 3, 4, 5])
    assert ci.kind == "t" and ci.n == 5
    assert ci.mean == 3.0 and ci.sd == pytest.approx(math.sqrt(2.5))
    assert ci.low == pytest.approx(3 - 1.963243, abs=1e-6) and ci.high == pytest.approx(3 + 1.963243, abs=1e-6)
    assert ci.text(2) == "3.00 [1.04, 4.96]"
    # two seeds: t_{0.975, 1} = 12.7062; values 1, 3: sem 1
    two = S.t_interval([1.0, 3.0])
    assert two.half_width == pytest.approx(12.7062, abs=1e-4)


def test_one_seed_says_so_and_no_value_is_a_dash():
    one = S.t_interval([-25.7])
    assert not one.has_interval and one.text(1, True) == "-25.7 (1 seed: no interval)"
    assert one.text(1, True, note=False) == "-25.7"
    assert S.t_interval([]).text() == "—" and S.t_interval([math.nan]).n == 0
    assert S.bootstrap_interval([4.0]).text(1) == "4.0 (1 seed: no interval)"


def test_constant_seeds_give_a_point_interval():
    ci = S.t_interval([2.0, 2.0, 2.0])
    assert (ci.low, ci.high, ci.sd) == (2.0, 2.0, 0.0)


def test_bootstrap_interval_lies_inside_the_range_and_is_narrower_than_t():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    b, t = S.bootstrap_interval(x), S.t_interval(x)
    assert b.kind == "bootstrap" and 1.0 <= b.low < 3.0 < b.high <= 5.0
    assert b.high - b.low < t.high - t.low  # why t is the default for a handful of seeds
    assert S.seed_interval(x, kind="bootstrap") == b
    with pytest.raises(ValueError):
        S.seed_interval(x, kind="nope")


# --- paired comparisons ----------------------------------------------------------------------
def test_paired_test_on_known_differences():
    # differences 1, 2, 3: mean 2, s 1, t = 2/(1/sqrt 3) = 3.4641, df 2;
    # t_2 cdf(t) = 1/2 + t/(2 sqrt(2 + t^2)) -> p = 2 (1/2 - 3.4641/(2 sqrt 14)) = 0.074180
    pr = S.paired_comparison({0: 10, 1: 12, 2: 14}, {0: 9, 1: 10, 2: 11})
    assert pr.seeds == [0, 1, 2] and pr.diffs.tolist() == [1, 2, 3]
    assert pr.t == pytest.approx(3.464102, abs=1e-6)
    assert pr.p_t == pytest.approx(1 - 3.464102 / math.sqrt(14), abs=1e-6)
    # interval 2 ± t_{0.975,2} (4.302653) / sqrt 3
    assert pr.interval.low == pytest.approx(2 - 2.484138, abs=1e-5)
    assert pr.interval.high == pytest.approx(2 + 2.484138, abs=1e-5)
    assert math.isnan(pr.p_wilcoxon) and "needs >= 6" in pr.wilcoxon_note


def test_lower_is_better_flips_the_sign():
    pr = S.paired_comparison({0: 10, 1: 12, 2: 14}, {0: 9, 1: 10, 2: 11}, higher_is_better=False)
    assert pr.diffs.tolist() == [-1, -2, -3] and pr.t == pytest.approx(-3.464102, abs=1e-6)


def test_wilcoxon_runs_from_six_seeds():
    # all six differences positive: exact two-sided p = 2 / 2^6
    cand = {s: float(s + 1) for s in range(6)}
    pr = S.paired_comparison(cand, {s: 0.0 for s in range(6)})
    assert pr.p_wilcoxon == pytest.approx(2 / 64)
    assert S.min_seeds_wilcoxon(0.05) == 6 and S.min_seeds_wilcoxon(0.01) == 8


def test_only_common_seeds_are_paired():
    pr = S.paired_comparison({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.0, 1: 0.0, 2: 3.0})
    assert pr.seeds == [0, 1] and pr.only_candidate == [5] and pr.only_baseline == [2]


def test_holm_by_hand():
    # sorted 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> cumulative max 0.03, 0.06, 0.06
    assert S.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    out = S.holm([0.02, math.nan])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_verdict_words_flip_where_they_should():
    base = {0: 0.0, 1: 0.0, 2: 0.0}
    better = S.compare_to_baselines({0: 2.0, 1: 2.1, 2: 1.9}, {"ew": base})
    assert better.loc[0, "verdict"] == "better" and better.loc[0, "p"] < 0.001
    worse = S.compare_to_baselines({0: -2.0, 1: -2.1, 2: -1.9}, {"ew": base})
    assert worse.loc[0, "verdict"] == "worse"
    # same mean difference, noisier seeds: 1, 2, 3 -> p = 0.074
    noisy = S.compare_to_baselines({0: 1.0, 1: 2.0, 2: 3.0}, {"ew": base})
    assert noisy.loc[0, "verdict"] == "no detectable difference at 3 seeds"
    # lower is better (Δm): a lower candidate is better
    assert S.compare_to_baselines({0: -2.0, 1: -2.1, 2: -1.9}, {"ew": base},
                                  higher_is_better=False).loc[0, "verdict"] == "better"
    one = S.compare_to_baselines({0: 5.0}, {"ew": {0: 1.0}})
    assert one.loc[0, "verdict"] == "1 seed: no test"


def test_holm_turns_a_raw_win_into_no_detectable_difference():
    # raw paired p-values chosen by hand to be (about) 0.03 and 0.04 on 3 seeds, two baselines
    def cand_for(p):  # differences d, d+e, d-e with t = d/(e/sqrt 3): pick t from the t_2 quantile
        t = st.t.ppf(1 - p / 2, 2)
        return {0: t / math.sqrt(3), 1: t / math.sqrt(3) + 1, 2: t / math.sqrt(3) - 1}
    c = cand_for(0.03)
    zero = {0: 0.0, 1: 0.0, 2: 0.0}
    alone = S.compare_to_baselines(c, {"ew": zero})
    assert alone.loc[0, "p"] == pytest.approx(0.03) and alone.loc[0, "verdict"] == "better"
    two = S.compare_to_baselines(c, {"ew": zero, "uw": zero})
    assert two["p_holm"].tolist() == pytest.approx([0.06, 0.06])
    assert set(two["verdict"]) == {"no detectable difference at 3 seeds"}


# --- seed planner ---------------------------------------------------------------------------
def test_seed_planner_matches_the_power_tables():
    # one-sample/paired t, two-sided α 0.05, 80 % power: d = 1 -> 10 pairs, d = 0.5 -> 34 (Cohen 1988)
    assert S.seeds_needed(2.0, 2.0).seeds == 10
    assert S.seeds_needed(1.0, 2.0).seeds == 34
    # the planned n reaches 80 % and n - 1 does not (noncentral t by hand)
    def power(n, d):
        crit = st.t.ppf(0.975, n - 1)
        nc = d * math.sqrt(n)
        return st.nct.sf(crit, n - 1, nc) + st.nct.cdf(-crit, n - 1, nc)
    assert power(10, 1.0) >= 0.8 > power(9, 1.0)
    assert S.paired_power(10, 1.0, 1.0) == pytest.approx(power(10, 1.0), abs=1e-6)
    assert S.seeds_needed(1.0, math.nan).seeds is None and "2 paired seeds" in S.seeds_needed(1.0, math.nan).text()
    assert "10 seeds detect a difference of 2.0 points with 80% power" in S.seeds_needed(2.0, 2.0).text()


def test_compare_plans_at_the_holm_level():
    zero = {0: 0.0, 1: 0.0, 2: 0.0}
    cand = {0: 1.0, 1: 2.0, 2: 3.0}  # diff 2, sd 1 (d = 2)
    one = S.compare_to_baselines(cand, {"a": zero}, delta=2.0)
    two = S.compare_to_baselines(cand, {"a": zero, "b": zero}, delta=2.0)
    assert one.attrs["plan_alpha"] == 0.05 and two.attrs["plan_alpha"] == 0.025
    assert one.loc[0, "seeds_needed"] == S.seeds_needed(2.0, 1.0).seeds
    assert two.loc[0, "seeds_needed"] == S.seeds_needed(2.0, 1.0, alpha=0.025).seeds >= one.loc[0, "seeds_needed"]


# --- reproduction verdicts ------------------------------------------------------------------
def test_reproduction_welch_from_summary_stats_by_hand():
    ours = [9.0, 10.0, 11.0]  # mean 10, s 1, n 3
    # paper 12 ± 1 (n 3): t = -2 / sqrt(2/3) = -2.4495, Welch df = 4
    r = S.reproduction(ours, 12.0, 1.0, 3)
    t = -2 / math.sqrt(2 / 3)
    assert r.rule == "welch" and r.p == pytest.approx(2 * st.t.sf(abs(t), 4), abs=1e-9)
    assert r.status == "reproduced"  # p = 0.070
    far = S.reproduction(ours, 14.0, 1.0, 3)  # t = -4.899, p = 0.008
    assert far.status == "differs" and far.p == pytest.approx(2 * st.t.sf(4 / math.sqrt(2 / 3), 4), abs=1e-9)


def test_reproduction_fallbacks():
    ours = [9.0, 10.0, 11.0]  # t-interval 10 ± 2.484
    assert S.reproduction(ours, 12.0, None, 3).status == "reproduced"
    assert S.reproduction(ours, 12.6, math.nan, 3).status == "differs"
    # one seed of ours vs paper 12 ± 1 over 3: prediction half-width 4.303 * 1 * sqrt(4/3) = 4.968
    assert S.reproduction([7.1], 12.0, 1.0, 3).status == "reproduced"
    assert S.reproduction([7.0], 12.0, 1.0, 3).status == "differs"
    assert S.reproduction([7.0], 12.0, None, 3).status == "untested"
    assert S.reproduction([], 12.0, 1.0, 3).status == "untested"


def test_reproduction_line():
    v = {"ew": S.reproduction([9.0, 10.0, 11.0], 12.0, 1.0, 3), "uw": S.reproduction([9.0, 10.0, 11.0], 14.0, 1.0, 3),
         "gls": S.reproduction([], 3.0, 1.0, 3), "new": S.reproduction([1.0], math.nan, None, 3),
         "rlw": S.reproduction([1.0], 3.0, None, 3)}
    assert S.reproduction_line(v) == ("reproduced: 1 of 2 methods; differs: uw (ours +10.00 vs paper +14.00); "
                                      "untested: rlw")


# --- rank stability -------------------------------------------------------------------------
def test_bootstrap_rank_probability_on_a_constructed_case():
    # A's seeds are 0 and 10, B's 4 and 4: resampled, A's mean is 0, 5 or 10 with probability
    # 1/4, 1/2, 1/4 (independent resampling: the seed sets differ), so P(A first) = 3/4
    df = S.bootstrap_ranks({"A": {0: 0.0, 1: 10.0}, "B": {2: 4.0, 3: 4.0}}, n_boot=20000).set_index("method")
    assert df.loc["A", "p_first"] == pytest.approx(0.75, abs=0.015)
    assert df.loc["B", "p_first"] == pytest.approx(0.25, abs=0.015)
    # lower is better: the roles swap
    low = S.bootstrap_ranks({"A": {0: 0.0, 1: 10.0}, "B": {2: 4.0, 3: 4.0}}, higher_is_better=False,
                            n_boot=20000).set_index("method")
    assert low.loc["A", "p_first"] == pytest.approx(0.25, abs=0.015)


def test_bootstrap_ranks_paired_seeds_and_ties():
    # same seeds: resampled jointly. C beats D on every seed -> C first always
    df = S.bootstrap_ranks({"C": {0: 5.0, 1: 9.0}, "D": {0: 4.0, 1: 8.0}, "E": {0: 0.0, 1: 0.0},
                            "F": {0: -1.0, 1: -1.0}}, n_boot=2000).set_index("method")
    assert df.loc["C", "p_first"] == 1.0 and df.loc["F", "p_top3"] == 0.0 and df.loc["E", "p_top3"] == 1.0
    tie = S.bootstrap_ranks({"G": {0: 1.0}, "H": {0: 1.0}}, n_boot=100).set_index("method")
    assert tie.loc["G", "p_first"] == 0.5 == tie.loc["H", "p_first"]


def test_bootstrap_mean_ranks():
    # two metrics, higher better on the first, lower on the second; A best on both on every seed
    s = {"A": np.array([[10.0, 1.0], [11.0, 1.5]]), "B": np.array([[5.0, 3.0], [6.0, 4.0]]),
         "C": np.array([[1.0, 9.0]])}
    df = S.bootstrap_mean_ranks(s, [True, False], n_boot=200).set_index("method")
    assert df.loc["A", "mr"] == 1.0 and df.loc["A", "mr_low"] == 1.0 == df.loc["A", "mr_high"]
    assert df.loc["C", "mr"] == 3.0 and math.isnan(df.loc["C", "mr_low"])


def test_friedman_and_nemenyi_by_hand():
    # 4 benchmarks, A always first, B second, C third: rank sums 4, 8, 12;
    # chi2 = 12/(N k (k+1)) sum R^2 - 3 N (k+1) = 0.25 * 224 - 48 = 8, p = exp(-4) (chi2, 2 df)
    scores = pd.DataFrame({"A": [3.0, 5.0, 1.0, 9.0], "B": [2.0, 4.0, 0.0, 8.0], "C": [1.0, 3.0, -1.0, 7.0]})
    res = S.friedman_nemenyi(scores)
    assert res.statistic == pytest.approx(8.0) and res.p == pytest.approx(math.exp(-4))
    assert res.mean_ranks.to_dict() == {"A": 1.0, "B": 2.0, "C": 3.0}
    # CD = q_0.05(3) / sqrt 2 * sqrt(3*4/(6*4)) = 2.3437 * 0.70711 (Demšar 2006, Table 5: q = 2.343)
    assert res.cd == pytest.approx(2.343701 * math.sqrt(0.5), abs=1e-5)
    assert "not distinguishable from the best: A, B" in res.text()
    assert S.nemenyi_cd(10, 1) / math.sqrt(10 * 11 / 6) == pytest.approx(3.164, abs=1e-3)  # Demšar: 3.164
    # a method missing on a benchmark is left out; lower is better reverses the ranks
    scores["D"] = [1.0, math.nan, 2.0, 3.0]
    assert list(S.friedman_nemenyi(scores, higher_is_better=False).mean_ranks.index) == ["C", "B", "A"]
