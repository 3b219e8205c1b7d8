"""Part II evidence that the budget and depth-versus-width chapters word from stored runs.

The double softmax's training fit measured on a scale both networks share
(:func:`softmax_fit`), how many seeds of the problem's recipe reach the 2C threshold
(:func:`problem_recipe_seeds`), the reported 100-unit network against the problem's recipe
(:func:`recipe_gain_tests`), and every deeper network of a depth-versus-width sweep against
the single hidden layer on test (:func:`deeper_against_one_layer`). Everything reads the
results store; nothing trains.
"""

from __future__ import annotations

import math

from nnlab import experiments as E
from nnlab import results as store
from nnlab import stats
from nnlab.book.mlp_budget import (
    BUDGETS,
    LONG_BUDGETS,
    STUDENT_TEST_ACC,
    _budget_list,
    compare_runs,
    depth_width_table,
    gain_test,
    length_gains,
    per_seed,
)

#: The double softmax's loss floor, -log(e / (e + 9)): the true class at probability one.
DOUBLE_SOFTMAX_FLOOR = -math.log(math.e / (math.e + 9))
ABLATION = "mlp-ablation"


def _last_epoch(variant: str, key: str) -> dict[int, float]:
    """Per seed, the last epoch's ``key`` of a ``mlp-ablation`` variant's stored history."""
    return {r["seed"]: r["history"][key][-1] for r in store.runs(ABLATION, variant)}


def training_steps(name: str, variant: str) -> int:
    """Optimiser steps of one run of a stored variant: epochs times batches per epoch of the
    training split."""
    from nnlab.data import raw_split

    n_train = len(raw_split("train")[0])
    exp = E.get(name)
    cfg = exp.train_config(exp.variant(variant))
    return cfg.epochs * math.ceil(n_train / cfg.batch_size)


def softmax_fit() -> dict:
    """The double-softmax network's fit of its training images against the correct network's.

    ``floor``: the double softmax's smallest possible loss; per variant (``softmax-last``,
    ``problem-recipe``) the mean over seeds of the last epoch's training loss (``loss``), of
    that loss above its floor (``above_floor``; 0 for the correct loss) and of the training
    accuracy over the last epoch (``train_acc``, on the batches as they trained); ``test``:
    the training accuracies compared seed by seed (:func:`nnlab.stats.compare`)."""
    out: dict = {"floor": DOUBLE_SOFTMAX_FLOOR}
    for v, floor in (("softmax-last", DOUBLE_SOFTMAX_FLOOR), ("problem-recipe", 0.0)):
        loss = list(_last_epoch(v, "train_loss").values())
        acc = list(_last_epoch(v, "train_acc").values())
        out[v] = {"loss": sum(loss) / len(loss), "above_floor": sum(loss) / len(loss) - floor,
                  "train_acc": sum(acc) / len(acc)}
    out["test"] = stats.compare(_last_epoch("softmax-last", "train_acc"), _last_epoch("problem-recipe", "train_acc"),
                                names=("the double softmax", "the logits"))
    return out


def softmax_fit_sentence() -> str:
    """What the training runs say about the double softmax's fit, worded by its paired test."""
    fit = softmax_fit()
    c = fit["test"]
    text = (f"Training accuracy over the last epoch, which both networks measure alike, is "
            f"{100 * fit['softmax-last']['train_acc']:.2f}% with the double softmax against "
            f"{100 * fit['problem-recipe']['train_acc']:.2f}% with logits; seed by seed, {c.report()}. ")
    if c.detected and c.difference < 0:
        return text + "The double-softmax network fits its training images less well."
    if c.detected:
        return text + "The double-softmax network fits its training images better."
    return text + "Three seeds do not separate the two networks' fit of their training images."


def problem_recipe_seeds(required: float = 0.975) -> dict:
    """The problem recipe's 100-unit runs against the 2C threshold: ``passing`` seeds of ``n``,
    the ``worst`` seed's test accuracy, and ``required``."""
    s = store.summary(ABLATION, "test_acc", "problem-recipe")
    return {"passing": sum(v >= required for v in s["values"]), "n": s["n"], "worst": s["min"],
            "required": required}


def problem_recipe_seed_words() -> str:
    """``1 of 3 seeds reach the required 97.50% (worst seed 97.38%)``, from the stored runs."""
    p = problem_recipe_seeds()
    count = f"all {p['n']}" if p["passing"] == p["n"] else f"{p['passing']} of {p['n']}"
    verb = "reaches" if p["passing"] == 1 else "reach"
    return f"{count} seeds {verb} the required {p['required']:.2%} (worst seed {p['worst']:.2%})"


def recipe_gain_tests() -> dict[str, stats.Comparison]:
    """The reported 100-unit network (``mlp-100``, its chosen variant) against the problem's
    recipe (``mlp-ablation`` ``problem-recipe``), paired by seed on validation (``val``) and
    test (``test``) accuracy."""
    names = ("the reported network", "the problem's recipe")
    chosen = ("mlp-100", store.chosen_variant("mlp-100"))
    return {m: compare_runs(chosen, (ABLATION, "problem-recipe"), f"{m}_acc", names) for m in ("val", "test")}


def recipe_gain_sentence() -> str:
    """The reported 100-unit network against the problem's recipe, in the tests' words."""
    t = recipe_gain_tests()
    return f"seed by seed, on validation, {t['val'].report()}; on test, {t['test'].report()}"


def deeper_against_one_layer(budget: int, suffix: str = "", metric: str = "test_acc") -> dict[str, stats.Comparison]:
    """Every deeper network of the sweep ``depth-width-{budget}{suffix}`` against ``equal-1``,
    paired by seed on ``metric``, keyed by network."""
    name = f"depth-width-{budget}{suffix}"
    return {v.name: stats.compare(per_seed(name, v.name, metric), per_seed(name, "equal-1", metric),
                                  names=(v.name, "equal-1"))
            for v in E.get(name).variants if v.name != "equal-1"}


def pattern_tests(budget: int = 1000) -> int:
    """How many tests :func:`deeper_pattern_sentence` reports (none corrected for the others)."""
    return sum(len(deeper_against_one_layer(budget, s)) for s in ("", "-long"))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _sweep_pattern(budget: int, suffix: str) -> str:
    name = f"depth-width-{budget}{suffix}"
    tests = deeper_against_one_layer(budget, suffix)
    higher = sum(c.difference > 0 for c in tests.values())
    found = [c.verdict() for c in tests.values() if c.detected]
    text = (f"after {E.get(name).train.epochs} epochs {higher} of the {len(tests)} deeper networks have a "
            f"higher mean than one layer, which ranks {_ordinal(1 + higher)} of {len(tests) + 1}, and ")
    if not found:
        return text + "no test finds a direction"
    verb = "finds" if len(found) == 1 else "find"
    return text + f"{stats.count_words(len(found))} of the tests {verb} a direction ({'; '.join(found)})"


def deeper_pattern_sentence(budget: int = 1000) -> str:
    """Every deeper network against one layer on test, in both sweeps of a budget: how many
    have the higher mean, where one layer ranks, and which paired tests find a direction."""
    parts = [_sweep_pattern(budget, s) for s in ("", "-long")]
    return (f"At {budget} units, testing every deeper network against one layer on test, seed by seed: "
            f"{parts[0]}; {parts[1]}. These {pattern_tests(budget)} tests are not corrected for each "
            "other or for the ones above: a pattern to test with more seeds, not evidence that depth helps.")


def deeper_pattern_summary(budget: int = 1000, suffix: str = "-long") -> str:
    """One sweep's part of :func:`deeper_pattern_sentence`, for a summary."""
    return f"At {budget} units, on test, {_sweep_pattern(budget, suffix)} (uncorrected tests)."


def sweep_versions(suffix: str = "") -> str:
    """The ``nnlab`` versions that trained the stored runs of the depth-versus-width sweeps
    ``depth-width-{budget}{suffix}``, every budget (``0.1.0``, or ``0.1.0, 0.2.0``)."""
    return ", ".join(sorted({r["nnlab_version"] for b in BUDGETS for r in store.runs(f"depth-width-{b}{suffix}")}))


def uncorrected_tests() -> int:
    """How many paired tests the depth-versus-width chapter reports, none corrected for the
    others: per sweep the best deeper network against one layer on validation and on test, per
    long sweep also the top depth against the bottom and the gain test
    (:func:`nnlab.book.mlp_budget.gain_test`), and
    every deeper network against one layer on test at 1000 units
    (:func:`pattern_tests`), and on validation and test every tapering network against the
    equal widths of its depth (:func:`taper_against_equal`) and taper-4 against equal-2
    (:func:`depth_at_equal_width`)."""
    shapes = 2 * (len(taper_against_equal()) + len(depth_at_equal_width()))
    return 2 * len(BUDGETS) + 4 * len(LONG_BUDGETS) + pattern_tests() + shapes


#: The depths at which a depth-versus-width sweep has both an equal-width and a tapering network.
SHAPE_DEPTHS = (2, 3, 4)
SWEEP_LENGTHS = ("", "-long")


def _sweep(budget: int, suffix: str) -> str:
    return f"depth-width-{budget}{suffix}"


def _cell_words(budget: int, suffix: str, depth: int | None = None) -> str:
    layers = "" if depth is None else f", {depth} layers"
    return f"{budget} units{layers}, {E.get(_sweep(budget, suffix)).train.epochs} epochs"


def taper_against_equal(metric: str = "val_acc") -> dict[tuple[int, str, int], stats.Comparison]:
    """Every tapering network against the equal-width network of the same depth and sweep,
    paired by seed on ``metric``, keyed by ``(budget, suffix, depth)``."""
    return {(b, s, d): compare_runs((_sweep(b, s), f"taper-{d}"), (_sweep(b, s), f"equal-{d}"), metric)
            for b in BUDGETS for s in SWEEP_LENGTHS for d in SHAPE_DEPTHS}


def _found(tests: dict, words) -> str:
    """The detected tests of ``tests`` as ``cell: +0.79 points, p = 0.029``, or ``none``."""
    found = [f"{words(*k)}: {c.amount(signed=True)}, {stats.format_p(c.p)}" for k, c in tests.items() if c.detected]
    return "; ".join(found) or "none"


def _taper_metric(metric: str, label: str) -> str:
    tests = taper_against_equal(metric)
    higher = sum(c.difference > 0 for c in tests.values())
    ahead = {k: c for k, c in tests.items() if c.detected and c.difference > 0}
    behind = {k: c for k, c in tests.items() if c.detected and c.difference < 0}
    text = (f"on {label} the tapering network has the higher mean in {higher} of the {len(tests)} pairs and the "
            f"paired test puts it ahead in {stats.count_words(len(ahead))} ({_found(ahead, _cell_words)})")
    if behind:
        return text + f" and behind in {stats.count_words(len(behind))} ({_found(behind, _cell_words)})"
    return text + ", behind in none"


def taper_sentence() -> str:
    """Tapering against equal widths at every budget, depth and length, on validation and test,
    in the words of the paired tests (:func:`taper_against_equal`)."""
    n = len(taper_against_equal())
    return (f"Seed by seed, each tapering network against the equal-width network of the same depth, over "
            f"the {n} pairs of the six sweeps (three budgets, two to four hidden layers, 4 and 12 epochs): "
            f"{_taper_metric('val_acc', 'validation')}; {_taper_metric('test_acc', 'test')}.")


def taper_summary() -> str:
    """The validation half of :func:`taper_sentence` as counts, for the chapter's summary."""
    tests = taper_against_equal()
    ahead = sum(c.detected and c.difference > 0 for c in tests.values())
    behind = sum(c.detected and c.difference < 0 for c in tests.values())
    return (f"On validation tapering has the higher mean in {sum(c.difference > 0 for c in tests.values())} "
            f"of {len(tests)} pairs, is ahead of equal widths in {stats.count_words(ahead)} paired tests and "
            f"behind in {stats.count_words(behind) if behind else 'none'} (uncorrected tests).")


def first_layer_widths(budget: int) -> dict[str, int]:
    """The first hidden layer's width of ``taper-4`` and ``equal-2`` at a budget."""
    widths = depth_width_table(budget)["widths"]
    return {v: int(str(widths[v]).split("-")[0]) for v in ("taper-4", "equal-2")}


def depth_at_equal_width(metric: str = "test_acc") -> dict[tuple[int, str], stats.Comparison]:
    """``taper-4`` (four layers, its first at least as wide as ``equal-2``'s) against ``equal-2``
    (two layers), paired by seed on ``metric`` in every sweep, keyed by ``(budget, suffix)``."""
    return {(b, s): compare_runs((_sweep(b, s), "taper-4"), (_sweep(b, s), "equal-2"), metric)
            for b in BUDGETS for s in SWEEP_LENGTHS}


def _depth_metric(metric: str, label: str) -> str:
    tests = depth_at_equal_width(metric)
    two = {k: c for k, c in tests.items() if c.detected and c.difference < 0}
    four = {k: c for k, c in tests.items() if c.detected and c.difference > 0}

    def part(found: dict) -> str:
        return f"{stats.count_words(len(found))} ({_found(found, _cell_words)})" if found else "none"
    return (f"on {label}, of the {stats.count_words(len(tests))} sweeps, equal-2 is ahead in {part(two)} "
            f"and taper-4 in {part(four)}")


def depth_at_equal_width_sentence() -> str:
    """Whether depth costs accuracy when the first layer is no narrower: ``taper-4`` against
    ``equal-2`` in every sweep, in the paired tests' words (signed differences are taper-4
    minus equal-2)."""
    tests = depth_at_equal_width()
    two = any(c.detected and c.difference < 0 for c in tests.values())
    widths = "; ".join(f"{w['taper-4']} against {w['equal-2']} units at a budget of {b}"
                       for b, w in ((b, first_layer_widths(b)) for b in BUDGETS))
    lead = ("A narrower first layer is not the whole cost of depth. " if two else
            "Whether depth costs more than first-layer width, these sweeps do not show. ")
    last = int(str(depth_width_table(BUDGETS[0])["widths"]["taper-4"]).split("-")[-1])
    return (f"{lead}The four-layer taper-4 has a first layer at least as wide as the two-layer equal-2's "
            f"({widths}); seed by seed (taper-4 minus equal-2), {_depth_metric('test_acc', 'test')}; "
            f"{_depth_metric('val_acc', 'validation')}. Which part of taper-4 costs the accuracy, its extra "
            f"stages or its narrow last layers ({last} units at a budget of {BUDGETS[0]}), these sweeps do "
            "not separate.")


def gain_words() -> str:
    """Whether longer training shrinks the cost of depth, from the gain tests
    (:func:`nnlab.book.mlp_budget.gain_test`) of every long sweep."""
    more = [b for b in LONG_BUDGETS if length_gains(b)["deeper"] > length_gains(b)["shallow"]]
    found = [b for b in LONG_BUDGETS if gain_test(b).detected and gain_test(b).difference > 0]
    text = (f"From 4 to 12 epochs the deeper networks gain more than one layer, on average over them, at "
            f"{_budget_list(more) or 'no'} units")
    if found:
        return text + (f", detectably at {_budget_list(found)} (the gain tests above), which suggests that "
                       "part of the cost of depth is one of optimisation, which longer training shrinks.")
    return text + ", detectably at none (the gain tests above)."


def depth_at_equal_width_summary() -> str:
    """The test half of :func:`depth_at_equal_width_sentence` as counts, for the summary."""
    tests = depth_at_equal_width()
    two = sum(c.detected and c.difference < 0 for c in tests.values())
    four = sum(c.detected and c.difference > 0 for c in tests.values())
    return (f"At about the same first-layer width, four layers (taper-4) against two (equal-2) on test: the "
            f"two layers are ahead in {stats.count_words(two) if two else 'none'} of {stats.count_words(len(tests))} "
            f"sweeps, the "
            f"four in {stats.count_words(four) if four else 'none'} (uncorrected tests).")


def student_finals_pass() -> bool:
    """Whether the last epoch of each of the student's runs (2C-2E) also meets its problem's
    threshold (:data:`nnlab.book.mlp_budget.STUDENT_TEST_ACC`)."""
    from nnlab.book.problems import TARGETS

    required = {t.problem: t.required for t in TARGETS}
    return all(accs[-1] >= required[p] for p, accs in STUDENT_TEST_ACC.items())


def student_finals_words() -> str:
    """Whether choosing the best epoch decided any threshold, from the student's logs."""
    if student_finals_pass():
        return ("The last epochs meet every threshold too, so picking the best epoch does not decide "
                "whether any threshold is met")
    return "Not every last epoch meets its threshold, so picking the best epoch decides whether one is met"


def ratio_trend_words(ratios: list[float], steps: list[int]) -> str:
    """The gradient-norm ratios after initialisation in words: ``rises from 0.19 at step 100 to
    0.43 at step 600 (three checkpoints)`` when they rise steadily, else their range."""
    n = f"{stats.count_words(len(ratios))} checkpoints"
    if all(a < b for a, b in zip(ratios, ratios[1:])):
        return f"rises from {ratios[0]:.2f} at step {steps[0]} to {ratios[-1]:.2f} at step {steps[-1]} ({n})"
    return f"lies between {min(ratios):.2f} and {max(ratios):.2f} ({n}, steps {steps[0]} to {steps[-1]})"
