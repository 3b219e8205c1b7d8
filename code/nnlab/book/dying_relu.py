"""Sentences for the data-order chapter (problem 1C) from ``nnlab.stats`` comparisons.

The Playground engine (``nnlab.playground.studies``) does the measuring; this module only
words what a paired comparison over seeds found, so that the chapter's sentences follow the
test: a direction is named only when the test detects one.
"""

from __future__ import annotations

from nnlab.stats import Comparison


def higher_phrase(c: Comparison, what: str, digits: int = 1) -> str:
    """``the dead share is higher with A than with B (paired t-test ...)`` when the test detects
    a difference, else ``no detectable difference at 40 seeds (A minus B: ...)``.

    Args:
        c: the comparison (``names`` name the two variants, as in "with A").
        what: the quantity compared, as the subject of the sentence.
        digits: decimals of the difference and its interval.
    """
    if not c.detected:
        return c.report(digits)
    high, low = c.names if c.difference > 0 else c.names[::-1]
    return f"{what} is higher with {high} than with {low} ({c.describe(digits)})"
