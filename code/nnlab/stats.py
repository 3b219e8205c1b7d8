"""Comparing variants over seeds: one rule for every sentence that says one thing beats another.

:func:`compare` takes two variants' results, seed by seed, and tests the difference of their
means: paired by seed (Student's paired t-test, ``scipy.stats.ttest_rel``) when both were
run on the same seeds, since a shared seed fixes the data order and more; Welch's unequal-
variance t-test (``scipy.stats.ttest_ind`` with ``equal_var=False``) otherwise. It returns
a :class:`Comparison`: the difference, its confidence interval from the t distribution, the
p-value, the number of seeds, and :meth:`Comparison.verdict`, the phrase a sentence prints::

    >>> c = compare({0: .991, 1: .990, 2: .992}, {0: .990, 1: .990, 2: .991}, names=("dropout", "none"))
    >>> c.verdict()
    'no detectable difference at three seeds'

A verdict names a direction only when the test finds one (``p < alpha``, 0.05 unless told).
Three seeds detect only large, consistent differences: "no detectable difference" is a result,
not a proof of equality.

:func:`rank_correlation` and :func:`rank_correlation_interval` measure how two rankings of
the same candidates agree (Spearman's correlation and a bootstrap interval over candidates).

:func:`nnlab.stats.holm` corrects a family of comparisons for their number (Holm's step-down method): each
returned :class:`Comparison` carries its adjusted p-value, so its verdict names a direction only
when the corrected test finds one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _scipy

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 10: "ten"}

Results = Mapping[object, float] | Sequence[float]


def count_words(n: int) -> str:
    """A small count in words (``three``), a large one in digits."""
    return NUMBER_WORDS.get(n, str(n))


def format_p(p: float) -> str:
    """``p = 0.035``, ``p = 0.20``, ``p < 0.001``: two significant digits, never a bare zero."""
    if math.isnan(p):
        return "p undefined"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:#.2g}"


@dataclass(frozen=True)
class Comparison:
    """The difference ``a - b`` of two variants' mean results over seeds, tested.

    ``difference``, ``low``, ``high``, ``mean_a`` and ``mean_b`` are in the results' own units
    (fractions of 1 for accuracies); ``scale`` and ``unit`` only word the verdict (100 and
    ``points`` turn a difference of accuracies into percentage points).
    """

    names: tuple[str, str]
    test: str  # "paired" (by seed) or "welch"
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    level: float
    t: float
    df: float
    p: float
    alpha: float = 0.05
    scale: float = 100.0
    unit: str = "points"
    family: int = 1  # tests in the family ``p`` is corrected for (1: uncorrected)
    p_raw: float = math.nan  # the uncorrected p-value when ``family > 1``

    @property
    def paired(self) -> bool:
        return self.test == "paired"

    @property
    def n(self) -> int:
        """Seeds per variant: the pairs of a paired test, the smaller sample of Welch's."""
        return min(self.n_a, self.n_b)

    @property
    def detected(self) -> bool:
        """Whether the test finds a difference at level ``alpha`` (never on an undefined p)."""
        return bool(self.p < self.alpha)

    @property
    def ahead(self) -> str | None:
        """The variant with the higher mean when the test detects a difference, else None."""
        if not self.detected:
            return None
        return self.names[0] if self.difference > 0 else self.names[1]

    def seeds_words(self) -> str:
        """``three seeds``; ``3 and 5 seeds`` for unequal samples."""
        if self.n_a == self.n_b:
            return f"{count_words(self.n_a)} seed" + ("s" if self.n_a != 1 else "")
        return f"{self.n_a} and {self.n_b} seeds"

    def amount(self, signed: bool = False, digits: int = 2) -> str:
        """The difference in the verdict's unit: ``0.12 points`` (``+0.12 points`` if signed)."""
        value = self.scale * (self.difference if signed else abs(self.difference))
        return f"{value:{'+' if signed else ''}.{digits}f} {self.unit}"

    def interval(self, digits: int = 2) -> str:
        """``95% interval -0.21 to +0.45 points``."""
        lo, hi = self.scale * self.low, self.scale * self.high
        return f"{round(100 * self.level)}% interval {lo:+.{digits}f} to {hi:+.{digits}f} {self.unit}"

    def verdict(self, digits: int = 2) -> str:
        """The phrase a sentence prints: ``no detectable difference at three seeds``, or
        ``A ahead of B by 0.18 points, p = 0.035``."""
        if not self.detected:
            return f"no detectable difference at {self.seeds_words()}"
        first, second = self.names if self.difference > 0 else self.names[::-1]
        return f"{first} ahead of {second} by {self.amount(digits=digits)}, {self.p_words()}"

    def p_words(self) -> str:
        """``p = 0.035``, or ``Holm-adjusted p = 0.070`` for a corrected comparison."""
        return f"Holm-adjusted {format_p(self.p)}" if self.family > 1 else format_p(self.p)

    def report(self, digits: int = 2) -> str:
        """The verdict, with the signed difference and p-value where it names no direction:
        ``A ahead of B by 0.70 points, p = 0.022``, or ``no detectable difference at three
        seeds (A minus B: -0.21 points, p = 0.11)``."""
        if self.detected:
            return self.verdict(digits)
        evidence = f"{self.names[0]} minus {self.names[1]}: {self.amount(signed=True, digits=digits)}"
        return f"{self.verdict(digits)} ({evidence}, {self.p_words()})"

    def describe(self, digits: int = 2) -> str:
        """The verdict with its evidence, for a parenthesis: ``paired t-test over three seeds:
        +0.12 points, 95% interval -0.21 to +0.45 points, p = 0.25``."""
        test = "paired t-test" if self.paired else "Welch's t-test"
        return (f"{test} over {self.seeds_words()}: {self.amount(signed=True, digits=digits)}, "
                f"{self.interval(digits)}, {self.p_words()}")


def _as_mapping(x: Results) -> dict:
    return dict(x) if isinstance(x, Mapping) else dict(enumerate(x))


def compare(a: Results, b: Results, names: tuple[str, str] = ("A", "B"), *, paired: bool | None = None,
            level: float = 0.95, alpha: float = 0.05, scale: float = 100.0, unit: str = "points") -> Comparison:
    """Test whether variant ``a``'s mean result differs from ``b``'s.

    Args:
        a, b: results per seed, as ``{seed: value}``; a plain sequence counts as unpaired.
        names: how the verdict calls ``a`` and ``b``.
        paired: ``None`` (default) pairs by seed exactly when both mappings have the same seeds;
            ``True`` insists (and raises if the seeds differ); ``False`` forces Welch's test.
        level: confidence level of the interval for ``mean(a) - mean(b)``.
        alpha: the test's level; the verdict names a direction only when ``p < alpha``.
        scale, unit: how the verdict words a difference (accuracy fractions → points).

    Returns:
        A :class:`Comparison`. With fewer than two seeds on a side (or no spread at all) the
        p-value is undefined (``nan``) and the verdict says no difference was detected.
    """
    paired_ok = isinstance(a, Mapping) and isinstance(b, Mapping) and set(a) == set(b)
    if paired and not paired_ok:
        raise ValueError("a paired comparison needs the same seeds on both sides, as {seed: value} mappings; "
                         f"got seeds {sorted(_as_mapping(a))} and {sorted(_as_mapping(b))}")
    use_paired = paired_ok if paired is None else paired
    xa, xb = _as_mapping(a), _as_mapping(b)
    if use_paired:
        seeds = sorted(xa)
        va = np.array([xa[s] for s in seeds], dtype=float)
        vb = np.array([xb[s] for s in seeds], dtype=float)
    else:
        va = np.array(list(xa.values()), dtype=float)
        vb = np.array(list(xb.values()), dtype=float)
    if not len(va) or not len(vb):
        raise ValueError("each variant needs at least one result")
    diff = float(va.mean() - vb.mean())
    t, df, p, low, high = math.nan, math.nan, math.nan, math.nan, math.nan
    if min(len(va), len(vb)) >= 2:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # no spread: scipy returns nan, said below
            res = _scipy.ttest_rel(va, vb) if use_paired else _scipy.ttest_ind(va, vb, equal_var=False)
            ci = res.confidence_interval(confidence_level=level)
        t, df, p = float(res.statistic), float(res.df), float(res.pvalue)
        low, high = float(ci.low), float(ci.high)
    return Comparison(names=tuple(names), test="paired" if use_paired else "welch", n_a=len(va), n_b=len(vb),
                      mean_a=float(va.mean()), mean_b=float(vb.mean()), difference=diff, low=low, high=high,
                      level=level, t=t, df=df, p=p, alpha=alpha, scale=scale, unit=unit)


def holm_adjust(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the ``i``-th smallest of ``m``
    p-values is multiplied by ``m - i + 1`` (``i`` from 1), made non-decreasing along the sorted
    order and capped at 1. Rejecting where the adjusted value is below ``alpha`` keeps the chance
    of any false detection in the family at most ``alpha``. An undefined (``nan``) p-value stays
    undefined and does not count in ``m``."""
    values = [float(x) for x in p]
    defined = sorted((v, i) for i, v in enumerate(values) if not math.isnan(v))
    m, running, out = len(defined), 0.0, list(values)
    for rank, (value, i) in enumerate(defined):
        running = max(running, min(1.0, (m - rank) * value))
        out[i] = running
    return out


def holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons of one family, their p-values corrected by :func:`holm_adjust`; each keeps
    its uncorrected value in ``p_raw`` and the family's size in ``family``. A family of one is
    returned unchanged."""
    if len(comparisons) < 2:
        return list(comparisons)
    adjusted = holm_adjust([c.p for c in comparisons])
    return [replace(c, p=q, p_raw=c.p, family=len(comparisons)) for c, q in zip(comparisons, adjusted)]


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two scores of the same candidates (ties share a rank);
    ``nan`` when either score is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _scipy.ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_scipy.spearmanr(a, b).statistic)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int  # resamples that gave a defined statistic


def rank_correlation_interval(a: Sequence[float], b: Sequence[float], *, level: float = 0.95,
                              resamples: int = 4000, seed: int = 0) -> Interval:
    """Spearman's correlation of ``a`` and ``b`` with a percentile bootstrap interval over
    candidates (pairs ``(a[i], b[i])`` drawn with replacement; ``scipy.stats.bootstrap``).

    A resample in which either score is constant has no rank correlation; such resamples
    (likely only with very few candidates) are left out of the interval, and
    ``resamples`` counts those kept.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _scipy.DegenerateDataWarning)  # undefined resamples: handled below
        res = _scipy.bootstrap((a, b), rank_correlation, paired=True, vectorized=False, n_resamples=resamples,
                               confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    dist = np.asarray(res.bootstrap_distribution)
    kept = dist[np.isfinite(dist)]
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if len(kept) < len(dist):  # scipy's interval is nan then: take it over the defined resamples
        low, high = (float(q) for q in np.quantile(kept, [(1 - level) / 2, (1 + level) / 2]))
    return Interval(estimate=rank_correlation(a, b), low=low, high=high, level=level, resamples=len(kept))
