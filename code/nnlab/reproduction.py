"""How close a run trained again came to its stored twin, on a graded scale.

Retraining a stored run on another machine rarely gives the same last bits: BLAS and oneDNN
pick their kernels by instruction set, and summation order changes the rounding. So a
reproduction is judged on four levels, best first (:data:`LEVELS`):

``identical``
    every metric equal to the last bit.
``rounding``
    equal to floating-point rounding: the accuracies equal (the same images right) and the
    losses within :data:`ROUNDING` of each other, relatively.
``noise``
    within seed noise: every metric that differs does so by at most :data:`NOISE_STDS`
    standard deviations of that metric over the stored seeds of the same variant (a
    difference a change of seed could make; needs two stored seeds or more).
``different``
    none of the above.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

LEVELS = ("identical", "rounding", "noise", "different")
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss")
ACCURACIES = ("val_acc", "test_acc")
ROUNDING = 1e-6  # relative: float32 losses averaged over batches agree to ~1e-7 when only rounding differs
NOISE_STDS = 2.0  # a difference of two runs is within seed noise if at most this many seed stds


def relative_difference(stored: float | None, now: float | None) -> float:
    """``|stored - now|`` relative to the larger magnitude; 0 if equal, inf if one is missing."""
    if stored == now:
        return 0.0
    if stored is None or now is None:
        return math.inf
    return abs(stored - now) / max(abs(stored), abs(now))


def seed_spread(runs: Iterable[dict], metrics: Iterable[str] = METRICS) -> dict[str, float | None]:
    """Per metric, the standard deviation (n - 1) over the given runs (the stored seeds of one
    variant); None where fewer than two runs have it."""
    runs = list(runs)
    spread = {}
    for m in metrics:
        values = [r[m] for r in runs if r.get(m) is not None]
        spread[m] = statistics.stdev(values) if len(values) >= 2 else None
    return spread


def compare(stored: dict, now: dict, spread: dict[str, float | None]) -> dict:
    """The verdict on one reproduced run: ``verdict`` (one of :data:`LEVELS`), ``differences``
    (``{metric: (stored, now)}`` for the metrics that differ), ``largest_relative``
    (``(metric, relative difference)`` of the largest, or None when identical) and
    ``in_stds`` (``{metric: |difference| / seed std}``, None where no spread is known)."""
    diff = {m: (stored.get(m), now.get(m)) for m in METRICS if stored.get(m) != now.get(m)}
    relative = {m: relative_difference(a, b) for m, (a, b) in diff.items()}
    in_stds = {}
    for m, (a, b) in diff.items():
        std = spread.get(m)
        if a is None or b is None or std is None:
            in_stds[m] = None
        else:
            in_stds[m] = 0.0 if a == b else (math.inf if std == 0 else abs(a - b) / std)
    if not diff:
        verdict = "identical"
    elif all(m not in ACCURACIES and relative[m] <= ROUNDING for m in diff):
        verdict = "rounding"
    elif all(s is not None and s <= NOISE_STDS for s in in_stds.values()):
        verdict = "noise"
    else:
        verdict = "different"
    largest = max(relative.items(), key=lambda kv: kv[1]) if relative else None
    return {"verdict": verdict, "differences": diff, "largest_relative": largest, "in_stds": in_stds}


def reproduced(verdict: str, tolerance: str) -> bool:
    """Whether a run with ``verdict`` counts as reproduced when ``tolerance`` (a level other
    than ``different``) is the worst level accepted."""
    if tolerance not in LEVELS[:-1]:
        raise ValueError(f"tolerance must be one of {', '.join(LEVELS[:-1])}, got {tolerance!r}")
    return LEVELS.index(verdict) <= LEVELS.index(tolerance)
