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
from nnlab.book.mlp_budget import compare_runs, per_seed

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
    from nnlab.book.mlp_budget import BUDGETS

    return ", ".join(sorted({r["nnlab_version"] for b in BUDGETS for r in store.runs(f"depth-width-{b}{suffix}")}))


def uncorrected_tests() -> int:
    """How many paired tests the depth-versus-width chapter reports, none corrected for the
    others: per sweep the best deeper network against one layer on validation and on test, per
    long sweep also the top depth against the bottom and the gain test
    (:func:`nnlab.book.mlp_budget.gain_test`), and
    every deeper network against one layer on test at 1000 units
    (:func:`pattern_tests`)."""
    from nnlab.book.mlp_budget import BUDGETS, LONG_BUDGETS

    return 2 * len(BUDGETS) + 4 * len(LONG_BUDGETS) + pattern_tests()
