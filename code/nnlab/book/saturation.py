"""The analyses of the saturation chapter (problem 1B) beyond what the Playground engine records.

* :func:`centring_ablation` trains the rescaled sigmoids of a 2×2 design, ``4 sigmoid(s) - 2``
  (slope up to 1, zero-centred), ``4 sigmoid(s)`` (slope up to 1, not centred) and
  ``sigmoid(s) - 1/2`` (slope up to 1/4, zero-centred), from the same seeds;
  :func:`speed_comparison` and :func:`speed_phrase` compare iterations to a loss through
  ``nnlab.stats.compare`` (paired by seed, on log iterations); :func:`centring_verdict`
  words what the design shows, and :func:`rate_sentence` where the sigmoid is slower. Where
  runs never got there, :func:`first_to_arrive` and an exact sign test replace the t-test.
* :func:`plateau_profile` reads the random-start runs' snapshots: slope and output spread
  on the way off the plateau.
* :func:`zero_start_symmetry` measures why the zero-start sigmoid network sits on a plateau:
  its first-layer gradient is the sample's label-weighted mean input, which the circle's
  symmetry makes small, and whose direction sets the final straight boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import binomtest

from nnlab import playground as pg
from nnlab.stats import Comparison, compare, format_p

THRESHOLD = 0.1  # the test loss whose first crossing counts as "learned"
SLOPE = "the slope (×4, with the outputs' scale)"  # the design's slope factor also scales the outputs
RESCALED = ("scaled_sigmoid", "centred_sigmoid", "half_centred_sigmoid")


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


@dataclass(frozen=True)
class SpeedComparison(Comparison):
    """A :func:`speed_comparison`: the paired t-test on log iterations, and, for runs that never
    got there (``censored``, per variant), the exact sign test on which variant got there first
    (``first``: seeds where ``a`` was first, seeds where ``b`` was; ``sign_p``). With censored
    runs the t-test's values are placeholders, so the sign test decides ``detected``."""

    censored: tuple[int, int] = (0, 0)
    first: tuple[int, int] = (0, 0)
    sign_p: float = float("nan")

    @property
    def detected(self) -> bool:
        if any(self.censored):
            return bool(self.sign_p < self.alpha)
        return bool(self.p < self.alpha)


def first_to_arrive(a: np.ndarray, b: np.ndarray, budgets: tuple[int, int]) -> tuple[int, int]:
    """Seeds on which ``a`` provably got there first, and seeds on which ``b`` did. A run that never
    got there arrived after its budget; a seed where the order is unknown or a tie counts for neither."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    ta, tb = np.where(fa, a, np.inf), np.where(fb, b, np.inf)
    a_first = fa & np.where(fb, ta < tb, ta < budgets[1])  # b never got there within its budget
    b_first = fb & np.where(fa, tb < ta, tb < budgets[0])
    return int(a_first.sum()), int(b_first.sum())


def speed_comparison(a: np.ndarray, b: np.ndarray, names: tuple[str, str], budgets: tuple[int, int],
                     seeds: Sequence[int]) -> SpeedComparison:
    """Compare two variants' iterations to a loss, paired by seed, on a log scale.

    The difference of ``log10`` iterations is ``log10`` of the ratio, so its test and interval
    are those of the ratio of typical times. Runs that never got there count as arriving at
    their budget (:func:`censored`) in the point estimate; when there are any, the exact sign
    test of :func:`first_to_arrive` replaces the t-test, whose interval would describe the
    placeholder values.
    """
    la = np.log10(np.maximum(censored(a, budgets[0]), 1.0))
    lb = np.log10(np.maximum(censored(b, budgets[1]), 1.0))
    c = compare(dict(zip(seeds, la)), dict(zip(seeds, lb)), names=names, scale=1.0, unit="decades")
    n_cens = (int((~np.isfinite(a)).sum()), int((~np.isfinite(b)).sum()))
    first = first_to_arrive(a, b, budgets)
    sign_p = float(binomtest(first[0], sum(first)).pvalue) if sum(first) else 1.0
    return SpeedComparison(**vars(c), censored=n_cens, first=first, sign_p=sign_p)


def times(ratio: float) -> str:
    """A ratio in words' precision: ``14``, ``2.5``."""
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def speed_phrase(c: Comparison, censored_runs: tuple[int, int] = (0, 0)) -> str:
    """``A needs 14 times as many iterations as B (paired t-test ...)``, or the verdict that
    no difference was detected, from a :func:`speed_comparison`.

    ``censored_runs`` counts, for each of the two variants, the runs that never got there and
    were counted at their budget: when the slower variant has such runs its true ratio is
    larger, and the phrase says "at least".
    """
    if isinstance(c, SpeedComparison) and any(c.censored):
        censored_runs = c.censored
    if any(censored_runs) and isinstance(c, SpeedComparison):
        return _censored_phrase(c, censored_runs)
    evidence = (f"paired t-test on log iterations over {c.seeds_words()}: 95% interval "
                f"{times(10 ** c.low)} to {times(10 ** c.high)} times, {format_p(c.p)}")
    if not c.detected:
        ratio = 10 ** c.difference
        return (f"no detectable difference at {c.seeds_words()} ({c.names[0]} over {c.names[1]}: "
                f"{times(ratio)} times the iterations, {format_p(c.p)}{_censoring(c.names, censored_runs)})")
    slow, fast = c.names if c.difference > 0 else c.names[::-1]
    n_slow = censored_runs[0] if c.difference > 0 else censored_runs[1]
    ratio = 10 ** abs(c.difference)
    if c.difference < 0:  # the interval is of a over b: turn it round
        evidence = (f"paired t-test on log iterations over {c.seeds_words()}: 95% interval "
                    f"{times(10 ** -c.high)} to {times(10 ** -c.low)} times, {format_p(c.p)}")
    bound = "at least " if n_slow else ""
    return (f"{slow} needs {bound}{times(ratio)} times as many iterations as {fast} "
            f"({evidence}{_censoring(c.names, censored_runs)})")


def _censored_phrase(c: SpeedComparison, censored_runs: tuple[int, int]) -> str:
    """:func:`speed_phrase` when runs never got there: the ratio with those runs counted at their
    budget, and the exact sign test on which variant got there first, with no interval."""
    sign = (f"{c.names[0]} first on {c.first[0]} seeds and {c.names[1]} on {c.first[1]}, exact sign test "
            f"{format_p(c.sign_p)}{_censoring(c.names, censored_runs)}")
    if not c.detected:
        return (f"no detectable difference at {c.seeds_words()} ({c.names[0]} over {c.names[1]}: "
                f"{times(10 ** c.difference)} times the iterations; {sign})")
    a_slower = c.first[1] > c.first[0]
    slow, fast = c.names if a_slower else c.names[::-1]
    n_slow = censored_runs[0] if a_slower else censored_runs[1]
    ratio = 10 ** (c.difference if a_slower else -c.difference)
    how = f"at least {times(ratio)} times" if n_slow and ratio >= 1 else f"about {times(ratio)} times"
    return f"{slow} needs {how} as many iterations as {fast} ({sign})"


def _censoring(names: tuple[str, str], censored_runs: tuple[int, int]) -> str:
    """``; 3 runs of A never got there and count at its budget`` (empty when none)."""
    parts = [f"{n} run{'s' if n > 1 else ''} of {name} never got there and count{'' if n > 1 else 's'} "
             "as arriving at the end of the budget" for name, n in zip(names, censored_runs) if n]
    return "".join("; " + p for p in parts)


def slower(c: Comparison) -> str | None:
    """The name of the variant that needs more iterations, when the test detects it."""
    if not c.detected:
        return None
    if isinstance(c, SpeedComparison) and any(c.censored):
        return c.names[0] if c.first[1] > c.first[0] else c.names[1]
    return c.names[0] if c.difference > 0 else c.names[1]


def faster_by(c: Comparison) -> float:
    """How many times as many iterations the first variant needs as the second (point estimate)."""
    return float(10 ** c.difference)


def centring_verdict(tests: Mapping[str, Comparison],
                     censored_runs: Mapping[str, tuple[int, int]] | None = None) -> str:
    """What the 2×2 design (slope bound 1/4 or 1, which also scales the outputs by 4; centred or
    not) says, chosen from its tests.

    Args:
        tests: four comparisons, each with the variant expected to be slower first:
            ``slope_centred`` (``sigmoid - 1/2`` against ``4 sigmoid - 2``), ``slope_uncentred``
            (``sigmoid`` against ``4 sigmoid``), ``centring_quarter`` (``sigmoid`` against
            ``sigmoid - 1/2``) and ``centring_one`` (``4 sigmoid`` against ``4 sigmoid - 2``).

        censored_runs: per comparison, the runs of each variant that never got there (counted at
            the budget); a ratio whose slower variant has such runs reads "at least".

    Returns:
        Two clauses joined by a semicolon: what the slope bound does, then what centring does.
    """
    censored_runs = censored_runs or {}
    helps = {k: slower(c) == c.names[0] for k, c in tests.items()}
    hurts = {k: slower(c) == c.names[1] for k, c in tests.items()}

    def bound(k: str) -> str:
        n = censored_runs.get(k, (0, 0))[0 if tests[k].difference > 0 else 1]
        return "at least " if n else ""

    r = {k: bound(k) + times(10 ** abs(tests[k].difference)) for k in tests}
    if helps["slope_centred"] and not helps["slope_uncentred"]:
        without = (f"without centring a steeper slope is slower ({r['slope_uncentred']} times the iterations)"
                   if hurts["slope_uncentred"] else "not detectably without centring")
        slope = (f"{SLOPE} matters once the outputs are centred (a slope of 1 instead of 1/4, with outputs "
                 f"four times as large, is {r['slope_centred']} times as fast among centred activations), "
                 f"and {without}")
    elif helps["slope_centred"]:
        slope = (f"{SLOPE} matters whether or not the outputs are centred ({r['slope_centred']} "
                 f"and {r['slope_uncentred']} times as fast)")
    elif helps["slope_uncentred"]:
        slope = f"{SLOPE} matters only for uncentred outputs"
    else:
        slope = f"{SLOPE} makes no detectable difference at {tests['slope_centred'].seeds_words()}"
    quarter = (f"{r['centring_quarter']} times as fast, detectably" if helps["centring_quarter"] else
               f"no detectable difference at {tests['centring_quarter'].seeds_words()} "
               f"({times(faster_by(tests['centring_quarter']))} times the iterations without it)")
    if helps["centring_one"] and faster_by(tests["centring_one"]) > faster_by(tests["centring_quarter"]):
        centring = (f"centring matters most when the outputs are large: at slope 1 it is "
                    f"{r['centring_one']} times as fast, at slope 1/4 {quarter}")
    elif helps["centring_one"] or helps["centring_quarter"]:
        centring = f"centring helps ({r['centring_one']} times at slope 1; at slope 1/4 {quarter})"
    else:
        centring = f"centring makes no detectable difference at {tests['centring_one'].seeds_words()}"
    return f"{slope}; {centring}"


def rate_sentence(reach: Mapping[tuple[str, float], np.ndarray], rates: Sequence[float]) -> str:
    """Where the sigmoid is slower than ReLU, rate by rate, from the grid's medians.

    Args:
        reach: ``(activation, rate) -> iterations`` (``nan`` where never reached), for
            ``relu`` and ``sigmoid``.
        rates: the learning rates of the grid.
    """
    def med(a: str, lr: float) -> float:
        return float(np.median(np.where(np.isfinite(reach[a, lr]), reach[a, lr], np.inf)))

    slower_at = [lr for lr in rates if med("sigmoid", lr) > med("relu", lr)]
    other = [lr for lr in rates if lr not in slower_at]
    if not other:
        return "the sigmoid is slower at every rate we tried"
    said = f"the sigmoid is slower at {_rates(slower_at)}" if slower_at else "the sigmoid is never slower"
    n = len(next(iter(reach.values())))
    counts = "; ".join(f"at rate {lr:g} ReLU reaches it on {int(np.isfinite(reach['relu', lr]).sum())} of {n} "
                       f"seeds and the sigmoid on {int(np.isfinite(reach['sigmoid', lr]).sum())}" for lr in other)
    return f"{said}, but not at {_rates(other)}: {counts}"


def _rates(rates: Sequence[float]) -> str:
    words = [f"{lr:g}" for lr in rates]
    return ("rate " if len(words) == 1 else "rates ") + (
        words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1])


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


def symmetrised(data: pg.Dataset) -> pg.Dataset:
    """The training points with each ``x`` followed by ``-x`` (same label), so that
    ``E[x] = E[y x] = 0`` exactly and every batch of an even size holds whole pairs."""
    x, y = data.x_train, data.y_train
    xs = np.empty((2 * len(x), x.shape[1]))
    xs[0::2], xs[1::2] = x, -x
    return replace(data, x_train=xs, y_train=np.repeat(y, 2))


def plateau_profile(history: pg.History, x: np.ndarray, frames: Sequence[int], activation: str = "sigmoid") -> dict:
    """What the random-start network looks like on its way off the plateau, at each of ``frames``
    (iterations with a snapshot in ``history``), as medians over the runs.

    Returns:
        ``frames``; ``slope`` ``(F, layers)``, the mean derivative of each hidden layer over the
        points ``x`` (``nnlab.playground.mean_activation_derivative``: 1/4 means unsaturated);
        ``spread`` ``(F,)``, the standard deviation of the output over ``x`` (near 0: the
        network is close to a constant); ``test_loss`` ``(F,)``.
    """
    slope, spread = [], []
    for t in frames:
        params = history.snapshots[t]
        slope.append(np.median(pg.mean_activation_derivative(params, x, activation), 0))
        spread.append(float(np.median(pg.predict(params, x, activation).std(-1))))
    return {"frames": np.asarray(frames), "slope": np.array(slope), "spread": np.array(spread),
            "test_loss": np.median(history.test_loss[:, list(frames)], 0)}


def scaled_downstream(params: pg.Params, factor: float = 4.0) -> pg.Params:
    """A copy of ``params`` with the weights of every layer after the first multiplied by
    ``factor`` (biases kept). With ``factor`` 4, ``sigmoid(s) - 1/2`` units compute from it
    exactly what ``4 sigmoid(s) - 2`` units compute from ``params``."""
    return [(w * factor if i else w.copy(), b.copy()) for i, (w, b) in enumerate(params)]


def scale_control(data: pg.Dataset, seeds: Sequence[int], budgets: Mapping[float, int],
                  threshold: float = THRESHOLD) -> dict[float, np.ndarray]:
    """Iterations to ``threshold`` for ``sigmoid(s) - 1/2`` started from Playground's weights with
    the downstream weights four times larger (:func:`scaled_downstream`): the initial function
    of the ``4 sigmoid(s) - 2`` network, with the gradient steps of the slope-1/4 units.

    Args:
        data: the points.
        seeds: the seeds (the same initial weights as the rest of the design).
        budgets: ``learning rate -> iterations`` to train.
        threshold: the test loss to reach.

    Returns:
        ``learning rate -> (S,)`` iterations, ``nan`` where never reached.
    """
    start = scaled_downstream(pg.init_params((4, 2), "playground", seeds))
    out = {}
    for lr, iterations in budgets.items():
        config = pg.PlaygroundConfig(activation="half_centred_sigmoid", learning_rate=lr, iterations=iterations)
        out[lr] = reach(pg.train(config, data, seeds=seeds, params=start), threshold)
    return out


def scale_split(scale: Comparison, slope: Comparison) -> str:
    """How the design's slope factor splits into the initial scale and the slope itself.

    Args:
        scale: ``sigmoid(s) - 1/2`` against the :func:`scale_control` (same units, the control
            starting from the ``4 sigmoid(s) - 2`` network's function).
        slope: the control against ``4 sigmoid(s) - 2`` (same starting function, slope 1/4 or 1).
    """
    by_scale, by_slope = slower(scale) == scale.names[0], slower(slope) == slope.names[0]

    def r(c: Comparison) -> str:
        n = c.censored[0] if isinstance(c, SpeedComparison) else 0
        return ("at least " if n else "") + times(10 ** abs(c.difference))

    if by_scale and by_slope:
        return (f"both parts count: the larger starting scale alone makes the slope-1/4 units {r(scale)} "
                f"times as fast, and the slope of 1, from the same starting function, another {r(slope)} times")
    if by_scale:
        return (f"the starting scale accounts for it ({r(scale)} times as fast); from the same starting "
                f"function the slope makes no detectable difference at {slope.seeds_words()}")
    if by_slope:
        return (f"the slope itself accounts for it ({r(slope)} times as fast from the same starting function); "
                f"the starting scale alone makes no detectable difference at {scale.seeds_words()}")
    return f"neither part alone makes a detectable difference at {scale.seeds_words()}"


def late_arrivals(short: Mapping[tuple[str, float], np.ndarray], long: Mapping[tuple[str, float], np.ndarray],
                  budget: int, names: Mapping[str, str]) -> str:
    """What a longer budget shows about the seeds that had not reached the loss.

    Args:
        short: ``(activation, rate) -> iterations`` of the grid (``nan``: not within its budget).
        long: the same seeds of some of those cells trained for ``budget`` iterations.
        budget: the longer budget.
        names: how to call each activation.

    Returns:
        One clause for every cell of ``long`` with seeds missing in ``short``, such as
        "the sigmoid at rate 0.1: all 3 missing seeds get there (after 619 to 763 iterations)".
    """
    parts = []
    for (activation, lr), times_long in long.items():
        missing = ~np.isfinite(short[activation, lr])
        if not missing.any():
            continue
        arrived = missing & np.isfinite(times_long)
        n_miss, n_arr = int(missing.sum()), int(arrived.sum())
        seeds = "seed" if n_miss == 1 else "seeds"
        if n_arr == n_miss:
            count = {1: "the missing seed gets there", 2: "both missing seeds get there"}.get(
                n_miss, f"all {n_miss} missing seeds get there")
        elif n_arr:
            count = f"{n_arr} of {n_miss} missing {seeds} {'gets' if n_arr == 1 else 'get'} there"
        else:
            count = "the missing seed still does not get there" if n_miss == 1 else \
                f"{'neither' if n_miss == 2 else 'none'} of the {n_miss} missing seeds gets there"
        when = ""
        if n_arr:
            lo, hi = times_long[arrived].min(), times_long[arrived].max()
            when = f" (after {lo:.0f} iterations)" if lo == hi else f" (after {lo:.0f} to {hi:.0f} iterations)"
        parts.append(f"{names[activation]} at rate {lr:g}: {count}{when}")
    return "; ".join(parts) if parts else "every seed got there within the grid's budget"
