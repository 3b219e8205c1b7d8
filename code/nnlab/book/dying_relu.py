"""Sentences for the data-order chapter (problem 1C) from ``nnlab.stats`` comparisons.

The Playground engine (``nnlab.playground.studies``) does the measuring; this module only
words what a paired comparison over seeds found, so that the chapter's sentences follow the
test: a direction is named only when the test detects one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import binomtest, fisher_exact

from nnlab.stats import Comparison, format_p

ALPHA = 0.05  # the level of the exact tests, as of ``nnlab.stats.compare``


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


def prediction_phrase(c: Comparison, interaction: Comparison | None = None) -> str:
    """How the cross-entropy's measured dead share bears on the prediction that it keeps pushing
    units off for longer in the negative phase.

    Args:
        c: the cross-entropy against the squared loss, in grouped order.
        interaction: the same two losses compared on the order effect (grouped minus shuffled,
            per seed). The predicted mechanism acts through the grouped order, so the prediction
            holds only where both tests detect a higher value with the cross-entropy; with
            ``c`` alone the data are only consistent with it.
    """
    if c.detected and c.difference > 0:
        if interaction is None:
            return "The measurement is consistent with the prediction where the steps are large"
        if interaction.detected and interaction.difference > 0:
            return "The prediction holds where the steps are large"
        return ("Where the steps are large the cross-entropy kills more units, but not detectably more "
                "through the grouped order")
    if c.detected:
        return "Where the steps are large the measurement goes against the prediction"
    return "Where the steps are large the measurement cannot confirm the prediction"


def count_phrase(a: Sequence[bool], b: Sequence[bool], names: tuple[str, str], what: str) -> str:
    """Two counts of the same seeds compared by an exact McNemar test (a two-sided binomial
    test on the seeds where the two variants disagree).

    Args:
        a: one flag per seed for the first variant (the event happened in that run).
        b: the same seeds' flags for the second variant.
        names: the two variants.
        what: the runs counted, plural (``networks with a dead unit``).

    Returns:
        ``7 of 40 networks with a dead unit with A against 3 of 40 with B (exact McNemar test on
        the 6 seeds where they differ, p = 0.34): not distinguishable at 40 seeds``, or, when the
        test detects it, ``...: more with A``.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b, p = mcnemar(a, b)
    n = len(a)
    if only_a + only_b == 0:  # nothing to test: say what the seeds show
        if not a.any():
            return f"no {what} with {names[0]} or with {names[1]} (of {n} seeds each)"
        return f"{int(a.sum())} of {n} {what} with both {names[0]} and {names[1]}, on the same seeds"
    counts = f"{int(a.sum())} of {n} {what} with {names[0]} against {int(b.sum())} of {n} with {names[1]}"
    test = f"exact McNemar test on the {only_a + only_b} seeds where they differ, {format_p(p)}"
    if p < ALPHA:
        more = names[0] if only_a > only_b else names[1]
        return f"{counts} ({test}): more with {more}"
    return f"{counts} ({test}): not distinguishable at {n} seeds"


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, float]:
    """The exact McNemar test of two flags per seed: the seeds where only ``a`` is set, those
    where only ``b`` is, and the two-sided p-value of a binomial test on them."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar needs the same seeds for both variants, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = float(binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
    return only_a, only_b, p


def order_cells(grid: Mapping[str, np.ndarray]) -> list[dict]:
    """Per cell of a ``nnlab.playground.dying_relu_grid``: networks with at least one dead unit
    in grouped (``grouped``) and shuffled (``shuffled``) order, out of ``n`` seeds, the exact
    McNemar ``p`` and ``more`` (``"grouped"``, ``"shuffled"`` or ``None`` when not detected at
    ``ALPHA``), with ``width`` and ``rate``."""
    dead = grid["dead_fraction_runs"] > 0  # (widths, rates, orders, seeds)
    cells = []
    for i, width in enumerate(grid["widths"]):
        for j, lr in enumerate(grid["learning_rates"]):
            only_g, only_s, p = mcnemar(dead[i, j, 0], dead[i, j, 1])
            more = ("grouped" if only_g > only_s else "shuffled") if p < ALPHA else None
            cells.append({"width": int(width), "rate": float(lr), "grouped": int(dead[i, j, 0].sum()),
                          "shuffled": int(dead[i, j, 1].sum()), "n": int(dead.shape[-1]), "p": p, "more": more})
    return cells


def order_table(grid: Mapping[str, np.ndarray]) -> str:
    """A Markdown table of :func:`order_cells`: widths as rows, rates as columns, each cell
    ``grouped / shuffled`` networks with a dead unit and the McNemar p-value, the counts in bold
    where the test detects more with one order."""
    cells = order_cells(grid)
    rates = list(dict.fromkeys(c["rate"] for c in cells))
    rows = ["| width | " + " | ".join(f"rate {lr:g}" for lr in rates) + " |", "|--:|" + "--:|" * len(rates)]
    for width in dict.fromkeys(c["width"] for c in cells):
        parts = []
        for c in (c for c in cells if c["width"] == width):
            counts = f"{c['grouped']} / {c['shuffled']}"
            parts.append(f"{'**' + counts + '**' if c['more'] else counts} ({format_p(c['p'])})")
        rows.append(f"| {width} | " + " | ".join(parts) + " |")
    return "\n".join(rows) + "\n"


def order_sentence(grid: Mapping[str, np.ndarray], more: str = "grouped") -> str:
    """Where the McNemar test of :func:`order_cells` detects more networks with a dead unit in
    the ``more`` order: ``width 2 at rates 0.03 and 0.3, width 8 at rate 1``, or ``no cell``."""
    parts = []
    cells = order_cells(grid)
    for width in dict.fromkeys(c["width"] for c in cells):
        rates = [f"{c['rate']:g}" for c in cells if c["width"] == width and c["more"] == more]
        if rates:
            said = rates[0] if len(rates) == 1 else ", ".join(rates[:-1]) + " and " + rates[-1]
            parts.append(f"width {width} at rate{'s' if len(rates) > 1 else ''} {said}")
    return ", ".join(parts) if parts else "no cell"


def detected_at(grid: Mapping[str, np.ndarray], width: int, rate: float) -> bool:
    """Whether :func:`order_cells` detects more networks with a dead unit in grouped order at
    ``width`` and ``rate``."""
    return any(c["width"] == width and c["rate"] == rate and c["more"] == "grouped" for c in order_cells(grid))


def paired_units_phrase(a: Sequence[int], b: Sequence[int], units: int, names: tuple[str, str]) -> str:
    """Dead units counted per network, the two variants paired by seed, compared by an exact
    sign test on the seeds where the counts differ (the units of one network are not
    independent, so the network is the unit of the test).

    Args:
        a: dead units per seed for the first variant.
        b: the same seeds' counts for the second variant.
        units: hidden units per network.
        names: the two variants.

    Returns:
        ``3 of 240 units with A against 1 of 240 with B (per network, more with A on 3 seeds and
        with B on 1; exact sign test, p = 0.62): not distinguishable at 40 seeds``, or, when the
        test detects it, ``...: more with A``.
    """
    a, b = np.asarray(a, int), np.asarray(b, int)
    if a.shape != b.shape:
        raise ValueError(f"paired_units_phrase needs the same seeds for both variants, got {a.shape} and {b.shape}")
    n = len(a)
    total = n * units
    counts = f"{int(a.sum())} of {total} units with {names[0]} against {int(b.sum())} of {total} with {names[1]}"
    more_a, more_b = int((a > b).sum()), int((b > a).sum())
    if more_a + more_b == 0:
        return f"{counts} (the same count in every network: no difference to test)"
    p = float(binomtest(more_a, more_a + more_b).pvalue)
    test = (f"per network, more with {names[0]} on {more_a} seed{'s' if more_a != 1 else ''} and with "
            f"{names[1]} on {more_b}; exact sign test, {format_p(p)}")
    if p < ALPHA:
        return f"{counts} ({test}): more with {names[0] if more_a > more_b else names[1]}"
    return f"{counts} ({test}): not distinguishable at {n} seeds"


def fisher_phrase(a: int, b: int, n: int, names: tuple[str, str], what: str) -> str:
    """Two counts out of ``n`` each compared by Fisher's exact test (for counts that cannot be
    paired, such as units pooled over runs)."""
    p = fisher_exact([[a, n - a], [b, n - b]]).pvalue
    counts = f"{a} of {n} {what} with {names[0]} against {b} of {n} with {names[1]}"
    verdict = (f"more with {names[0] if a > b else names[1]}" if p < ALPHA
               else f"not distinguishable at {n} {what}")
    return f"{counts} (Fisher's exact test, {format_p(p)}): {verdict}"


def output_deltas(z: np.ndarray) -> dict[str, np.ndarray]:
    """The output deltas for a negative target (``y = -1``) at output pre-activation ``z``.

    ``tanh_squared``: ``(out + 1)(1 - out^2)`` with ``out = tanh z`` (Playground's output and
    loss); ``cross_entropy``: ``sigmoid(z)``, the delta of ``log(1 + e^{z})`` on a linear output.
    Both fade as the network becomes confidently right (``z`` very negative); the first like
    ``e^{4z}``, the second only like ``e^{z}``.
    """
    out = np.tanh(z)
    return {"tanh_squared": (out + 1.0) * (1.0 - out * out), "cross_entropy": 1.0 / (1.0 + np.exp(-z))}


def constant_cells(grid: Mapping[str, np.ndarray]) -> str:
    """Where in a ``nnlab.playground.dying_relu_grid`` runs ended as constant networks, with counts.

    Returns:
        ``width 2: rate 1 (6 grouped / 1 shuffled of 40), rate 3 (...); width 8: rate 3 (0 / 4 of 40)``
        for every cell with at least one such run, or ``no cell`` when there is none.
    """
    runs = grid["constant_output_runs"]  # (widths, rates, orders, seeds)
    n = runs.shape[-1]
    parts = []
    for i, width in enumerate(grid["widths"]):
        cells = [f"rate {lr:g} ({int(runs[i, j, 0].sum())} grouped / {int(runs[i, j, 1].sum())} shuffled "
                 f"of {n})" for j, lr in enumerate(grid["learning_rates"]) if runs[i, j].sum() > 0]
        if cells:
            parts.append(f"width {int(width)}: " + ", ".join(cells))
    return "; ".join(parts) if parts else "no cell"


def robust_up_to(grid: Mapping[str, np.ndarray], width: int) -> float | None:
    """The largest rate up to which (inclusive) no run at ``width`` ended as a constant network,
    in either order; ``None`` when one did already at the smallest rate."""
    i = list(grid["widths"]).index(width)
    best = None
    for j, lr in enumerate(grid["learning_rates"]):
        if grid["constant_output_runs"][i, j].sum() > 0:
            break
        best = float(lr)
    return best
