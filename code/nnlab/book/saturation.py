"""The analyses of the saturation chapter (problem 1B) beyond what the Playground engine records.

* :func:`centring_ablation` trains the two rescaled sigmoids, ``4 sigmoid(s) - 2`` (slope up
  to 1, zero-centred) and ``4 sigmoid(s)`` (slope up to 1, not centred), from the same seeds;
  :func:`speed_comparison` and :func:`speed_phrase` compare iterations to a loss through
  ``nnlab.stats.compare`` (paired by seed, on log iterations); :func:`centring_verdict`
  words what the ablation shows.
* :func:`zero_start_symmetry` measures why the zero-start sigmoid network sits on a plateau:
  its first-layer gradient is the sample's label-weighted mean input, which the circle's
  symmetry makes small, and whose direction sets the final straight boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nnlab import playground as pg
from nnlab.stats import Comparison, compare, format_p

THRESHOLD = 0.1  # the test loss whose first crossing counts as "learned"
RESCALED = ("scaled_sigmoid", "centred_sigmoid")


def reach(history: pg.History, threshold: float = THRESHOLD) -> np.ndarray:
    """Iterations until the test loss first reaches ``threshold``; ``nan`` where never."""
    return pg.iterations_to_loss(history, threshold)


def centring_ablation(data: pg.Dataset, seeds: Sequence[int], budgets: Mapping[tuple[str, float], int],
                      threshold: float = THRESHOLD) -> dict[tuple[str, float], np.ndarray]:
    """Iterations to ``threshold`` for each ``(activation, learning rate)`` in ``budgets``.

    Args:
        data: the points.
        seeds: the seeds (each fixes the initial weights, the same for every activation).
        budgets: ``(activation, learning_rate) -> iterations`` to train.
        threshold: the test loss to reach.

    Returns:
        ``(activation, learning_rate) -> (S,)`` iterations, ``nan`` where never reached.
    """
    out = {}
    for (activation, lr), iterations in budgets.items():
        config = pg.PlaygroundConfig(activation=activation, learning_rate=lr, iterations=iterations)
        out[activation, lr] = reach(pg.train(config, data, seeds=seeds), threshold)
    return out


def censored(iterations: np.ndarray, budget: int) -> np.ndarray:
    """Iterations with a run that never got there counted as arriving at ``budget``
    (a lower bound on its true time: it understates how slow that variant is)."""
    return np.where(np.isfinite(iterations), iterations, float(budget))


def speed_comparison(a: np.ndarray, b: np.ndarray, names: tuple[str, str], budgets: tuple[int, int],
                     seeds: Sequence[int]) -> Comparison:
    """Compare two variants' iterations to a loss, paired by seed, on a log scale.

    The difference of ``log10`` iterations is ``log10`` of the ratio, so its test and interval
    are those of the ratio of typical times. Runs that never got there count as arriving at
    their budget (:func:`censored`).
    """
    la = np.log10(np.maximum(censored(a, budgets[0]), 1.0))
    lb = np.log10(np.maximum(censored(b, budgets[1]), 1.0))
    return compare(dict(zip(seeds, la)), dict(zip(seeds, lb)), names=names, scale=1.0, unit="decades")


def times(ratio: float) -> str:
    """A ratio in words' precision: ``14``, ``2.5``."""
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def speed_phrase(c: Comparison) -> str:
    """``A needs 14 times as many iterations as B (paired t-test ...)``, or the verdict that
    no difference was detected, from a :func:`speed_comparison`."""
    evidence = (f"paired t-test on log iterations over {c.seeds_words()}: 95% interval "
                f"{times(10 ** c.low)} to {times(10 ** c.high)} times, {format_p(c.p)}")
    if not c.detected:
        ratio = 10 ** c.difference
        return (f"no detectable difference at {c.seeds_words()} ({c.names[0]} over {c.names[1]}: "
                f"{times(ratio)} times the iterations, {format_p(c.p)})")
    slow, fast = c.names if c.difference > 0 else c.names[::-1]
    ratio = 10 ** abs(c.difference)
    if c.difference < 0:  # the interval is of a over b: turn it round
        evidence = (f"paired t-test on log iterations over {c.seeds_words()}: 95% interval "
                    f"{times(10 ** -c.high)} to {times(10 ** -c.low)} times, {format_p(c.p)}")
    return f"{slow} needs {times(ratio)} times as many iterations as {fast} ({evidence})"


def slower(c: Comparison) -> str | None:
    """The name of the variant that needs more iterations, when the test detects it."""
    if not c.detected:
        return None
    return c.names[0] if c.difference > 0 else c.names[1]


def centring_verdict(slope: Comparison, centring: Comparison) -> str:
    """What the ablation says about the two explanations, chosen from the two tests.

    Args:
        slope: sigmoid against ``4 sigmoid`` (only the slope bound differs).
        centring: ``4 sigmoid`` against ``4 sigmoid - 2`` (only the centring differs).
    """
    centring_helps = slower(centring) == centring.names[0]
    slope_helps = slower(slope) == slope.names[0]
    slope_hurts = slower(slope) == slope.names[1]
    if centring_helps and not slope_helps:
        tail = ("a steeper but uncentred sigmoid is slower than the sigmoid itself" if slope_hurts
                else "a steeper but uncentred sigmoid is no faster than the sigmoid itself")
        return ("centring, not the slope bound, makes the difference here: " + tail
                + ", and centring it at the same slope makes it fast")
    if centring_helps and slope_helps:
        return "both matter here: a steeper slope helps, and centring at the same slope helps further"
    if slope_helps:
        return "the slope bound makes the difference here; centring at the same slope adds nothing detectable"
    return "neither the slope bound nor centring makes a detectable difference here"


def _angle(v: np.ndarray) -> float:
    """Direction of a line's normal in degrees, in [0, 180) (a line has no orientation)."""
    return float(np.degrees(np.arctan2(v[1], v[0])) % 180.0)


def line_angle_between(u: np.ndarray, v: np.ndarray) -> float:
    """Angle in degrees between the lines spanned by ``u`` and ``v`` (0 to 90)."""
    d = abs(_angle(u) - _angle(v))
    return float(min(d, 180.0 - d))


def zero_start_symmetry(data: pg.Dataset, early: pg.Params, final: pg.Params, activation: str) -> dict:
    """Why a zero-start network of copies learns slowly, and where its line points.

    While all units are copies and their weights tiny, every hidden unit computes nearly the
    same value on every point, so the output is nearly a constant, ``out``, and the first-layer
    weight gradient is a constant times ``E[(out - y) x] = out E[x] - E[y x]`` over the training
    points. On data symmetric about the origin both means are only sampling noise.

    Args:
        data: the training points.
        early: parameters early in training (run 0 is used), while the units are still tiny.
        final: parameters at the end (run 0 is used).
        activation: the hidden activation.

    Returns:
        ``label_mean_input`` (E[y x]) and its norm ``label_mean_norm``; ``mean_norm`` (E|x|);
        ``drive`` (the norm of E[(out - y) x] under ``early``); ``grad_angle`` (degrees between
        the first-layer weight gradient under ``early`` and E[y x]); ``final_w`` (the first
        unit's final weights) and ``final_angle`` (degrees between them and E[y x]).
    """
    x, y = data.x_train, data.y_train
    label_mean = (y[:, None] * x).mean(0)
    params = pg.select_run(early, 0)
    pre, act = pg.forward(params, x, activation)
    grads = pg.backward(params, pre, act, y, activation)
    out = act[-1][0, :, 0]
    final_w = final[0][0][0][:, 0]
    return {
        "label_mean_input": label_mean, "label_mean_norm": float(np.linalg.norm(label_mean)),
        "mean_norm": float(np.linalg.norm(x, axis=1).mean()),
        "drive": float(np.linalg.norm(((out - y)[:, None] * x).mean(0))),
        "grad_angle": line_angle_between(grads[0][0][0][:, 0], label_mean),
        "final_w": final_w, "final_angle": line_angle_between(final_w, label_mean),
    }
