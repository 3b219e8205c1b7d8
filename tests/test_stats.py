"""nnlab.stats against scipy and against the textbook formulas, computed here independently."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from nnlab import stats

A = {0: 0.9882, 1: 0.9899, 2: 0.9891}
B = {0: 0.9884, 1: 0.9876, 2: 0.9877}


def test_shared_seeds_are_paired_and_match_ttest_rel():
    c = stats.compare(A, B, names=("taper-4", "equal-1"))
    assert c.test == "paired" and c.paired and c.n == 3
    ref = scipy_stats.ttest_rel([A[s] for s in (0, 1, 2)], [B[s] for s in (0, 1, 2)])
    assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue) and c.df == 2


def test_paired_interval_is_the_t_interval_of_the_differences():
    d = np.array([A[s] - B[s] for s in (0, 1, 2)])
    half = scipy_stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    c = stats.compare(A, B)
    assert c.difference == pytest.approx(d.mean())
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    wide = stats.compare(A, B, level=0.99)
    assert wide.low < c.low and wide.high > c.high


def test_pairing_follows_the_seeds_not_the_order():
    shuffled = {2: B[2], 0: B[0], 1: B[1]}
    assert stats.compare(A, shuffled).p == pytest.approx(stats.compare(A, B).p)


def test_different_seeds_use_welch_with_satterthwaite_degrees_of_freedom():
    b = {3: 0.9884, 4: 0.9876, 5: 0.9877, 6: 0.9870}
    c = stats.compare(A, b)
    assert c.test == "welch" and (c.n_a, c.n_b) == (3, 4)
    xa, xb = np.array(list(A.values())), np.array(list(b.values()))
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    t = (xa.mean() - xb.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    assert c.t == pytest.approx(t) and c.df == pytest.approx(df)
    assert c.p == pytest.approx(2 * scipy_stats.t.sf(abs(t), df))
    assert c.p == pytest.approx(scipy_stats.ttest_ind(xa, xb, equal_var=False).pvalue)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (c.low, c.high) == pytest.approx((c.difference - half, c.difference + half))


def test_sequences_and_forced_welch_are_unpaired():
    assert stats.compare(list(A.values()), list(B.values())).test == "welch"
    assert stats.compare(A, B, paired=False).test == "welch"
    with pytest.raises(ValueError, match="same seeds"):
        stats.compare(A, {0: 0.98, 1: 0.97, 5: 0.99}, paired=True)


def test_verdict_names_a_direction_only_when_the_test_detects_one():
    c = stats.compare(A, B, names=("taper-4", "equal-1"))
    assert c.p > 0.05 and not c.detected and c.ahead is None
    assert c.verdict() == "no detectable difference at three seeds"
    ahead = {s: v + 0.002 for s, v in B.items()}
    ahead[1] += 0.0002  # a consistent gain with a little spread
    d = stats.compare(ahead, B, names=("new", "old"))
    assert d.detected and d.ahead == "new" and d.p < 0.05
    assert d.verdict() == f"new ahead of old by {100 * d.difference:.2f} points, {stats.format_p(d.p)}"
    flipped = stats.compare(B, ahead, names=("old", "new"))
    assert flipped.verdict() == d.verdict() and flipped.difference == pytest.approx(-d.difference)
    assert stats.compare(A, B, alpha=0.5).detected  # the level is the caller's


def test_the_verdict_counts_the_seeds():
    five = {s: 0.9 + 0.001 * s for s in range(5)}
    other = {s: 0.9 + 0.001 * ((s * 3) % 5) for s in range(5)}
    assert stats.compare(five, other).verdict() == "no detectable difference at five seeds"
    assert stats.compare(list(A.values()), [0.98, 0.99, 0.97, 0.99]).verdict().endswith("at 3 and 4 seeds")


def test_undefined_tests_say_nothing_was_detected():
    one = stats.compare({0: 0.99}, {0: 0.98})
    assert math.isnan(one.p) and not one.detected and one.verdict() == "no detectable difference at one seed"
    flat = stats.compare({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})
    assert math.isnan(flat.p) and not flat.detected


def test_p_values_are_printed_with_two_significant_digits():
    assert stats.format_p(0.0351) == "p = 0.035"
    assert stats.format_p(0.1349) == "p = 0.13"
    assert stats.format_p(0.2019) == "p = 0.20" and stats.format_p(0.0103) == "p = 0.010"
    assert stats.format_p(0.00042) == "p < 0.001"


def test_report_adds_the_evidence_where_the_verdict_names_no_direction():
    c = stats.compare(A, B, names=("taper-4", "equal-1"))
    assert c.report() == (f"no detectable difference at three seeds (taper-4 minus equal-1: "
                          f"{100 * c.difference:+.2f} points, {stats.format_p(c.p)})")
    ahead = stats.compare({s: v + 0.002 + 0.0002 * (s == 1) for s, v in B.items()}, B, names=("new", "old"))
    assert ahead.report() == ahead.verdict()


def test_describe_carries_the_interval_and_the_test():
    text = stats.compare(A, B).describe()
    assert text.startswith("paired t-test over three seeds: +0.") and "95% interval" in text and "p = " in text


def test_rank_correlation_is_spearmans():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    b[3] = b[5]  # a tie
    assert stats.rank_correlation(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic)
    ranks = scipy_stats.rankdata(a), scipy_stats.rankdata(b)
    assert stats.rank_correlation(a, b) == pytest.approx(np.corrcoef(*ranks)[0, 1])
    assert math.isnan(stats.rank_correlation([1, 1, 1], [1, 2, 3]))


def test_rank_correlation_interval_brackets_a_clear_correlation():
    rng = np.random.default_rng(1)
    a = np.arange(40.0)
    b = a + rng.normal(0, 3, size=40)
    r = stats.rank_correlation_interval(a, b, resamples=1000)
    assert r.low <= r.estimate <= r.high and r.low > 0.8 and r.resamples == 1000
    narrow = stats.rank_correlation_interval(a, b, resamples=1000, level=0.5)
    assert r.low <= narrow.low <= narrow.high <= r.high


def test_rank_correlation_interval_skips_resamples_without_a_correlation():
    """With three candidates a resample often draws one candidate three times: no ranking."""
    r = stats.rank_correlation_interval([0.1, 0.2, 0.3], [0.3, 0.1, 0.2], resamples=500)
    assert r.resamples < 500 and -1 <= r.low <= r.high <= 1


def test_the_module_belongs_to_the_core():
    """Courses import it without the book: nnlab.stats must not pull nnlab.book in."""
    code = "import sys, nnlab.stats; assert not any(m.startswith('nnlab.book') for m in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_holm_adjusts_step_down_in_the_given_order():
    from nnlab.stats import holm_adjust

    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.6, 0.9]) == [1.0, 1.0]
    nan_kept = holm_adjust([float("nan"), 0.02, 0.04])
    assert math.isnan(nan_kept[0]) and nan_kept[1:] == pytest.approx([0.04, 0.04])


def test_holm_verdict_follows_the_corrected_test():
    from nnlab.stats import compare, holm

    a = {0: 0.90, 1: 0.92, 2: 0.95}
    strong = compare({s: v + 0.05 for s, v in a.items()}, a)  # no spread of the difference: p undefined
    nominal = compare({0: 0.93, 1: 0.94, 2: 0.99}, a)
    assert nominal.detected
    corrected = holm([nominal] * 3)
    assert all(c.family == 3 and c.p_raw == nominal.p for c in corrected)
    assert corrected[0].p == pytest.approx(min(1.0, 3 * nominal.p))
    assert corrected[0].detected == (3 * nominal.p < 0.05)
    assert "Holm-adjusted p" in corrected[0].report()
    assert holm([strong]) == [strong]
