"""Part II analyses: networks under a hidden-unit budget, and depth versus width.

Everything here reads the results store; nothing trains.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from nnlab import experiments as E
from nnlab import plots, stats
from nnlab import results as store
from nnlab.book.report import TARGETS, candidate_rows, fmt_pm, pct
from nnlab.models import build, count_parameters
from nnlab.rules import hidden_layers, hidden_units

BUDGET_EXPERIMENTS = ("mlp-100", "mlp-200", "mlp-1000")
BUDGETS = (100, 200, 1000)
MILD_ELASTIC = "the mild elastic field + affine"  # augment="elastic", in the book's words


def budget_results() -> pd.DataFrame:
    """The three reported models side by side, one column per problem: architecture, size,
    training, and accuracy over seeds against the problem's threshold and the student's run
    (accuracies in %)."""
    columns = {}
    for t, budget in zip(TARGETS[:3], BUDGETS):
        exp = E.get(t.experiment)
        variant = exp.variant(store.chosen_variant(exp.name))
        model = build(variant.spec, exp.data.input_shape)
        s = store.summary(t.experiment)
        v = store.summary(t.experiment, "val_acc")
        columns[f"{t.problem}: ≤ {budget} units"] = {
            "hidden widths": dict(variant.info)["widths"], "hidden units": str(hidden_units(model, input_shape=exp.data.input_shape)),
            "hidden layers": hidden_layers(model, input_shape=exp.data.input_shape), "parameters": f"{count_parameters(model):,}",
            "augmentation": exp.train_config(variant).augment, "epochs": exp.train_config(variant).epochs,
            "validation accuracy (%)": fmt_pm(v["mean"], v["std"]), "test accuracy (%)": fmt_pm(s["mean"], s["std"]),
            "worst seed, test (%)": pct(s["min"]), "required (%)": pct(t.required),
            "student's best run (%)": pct(t.student)}
    return pd.DataFrame(columns)


def candidate_table() -> pd.DataFrame:
    """Candidate recipes of the multi-variant budget experiments: validation decides."""
    rows = [r for name in BUDGET_EXPERIMENTS if len(E.get(name).variants) > 1
            for r in candidate_rows(name, "augmentation")]
    return pd.DataFrame(rows).drop(columns="parameters")


def histories(name: str, variant: str | None = None) -> list[dict]:
    """Per-epoch histories of a variant's runs (the chosen variant by default)."""
    return [r["history"] for r in store.runs(name, variant or store.chosen_variant(name))]


def student_schedule() -> dict[str, dict]:
    """Where the student's logged training loss (:data:`nnlab.book.problems.STUDENT_TRAIN_LOSS`)
    steps down: per problem, the epoch after which the loss fell by the largest factor
    (``epoch``, counted from 1: the loss of ``epoch`` over that of ``epoch + 1``), the losses
    either side (``before``, ``after``), that ``factor``, and the largest factor over the
    epochs from the third on, apart from the step (``other``; the first epochs fall fast in
    any run)."""
    from nnlab.book.problems import STUDENT_TRAIN_LOSS

    out = {}
    for problem, losses in STUDENT_TRAIN_LOSS.items():
        factors = [a / b for a, b in zip(losses, losses[1:])]
        step = max(range(2, len(factors)), key=factors.__getitem__)
        out[problem] = {"epoch": step + 1, "before": losses[step], "after": losses[step + 1],
                        "factor": factors[step],
                        "other": max(f for i, f in enumerate(factors) if i >= 2 and i != step),
                        "epochs": len(losses)}
    return out


#: The accuracy per epoch that the student's logs for problems 2C-2E print as "val acc",
#: measured on the test set (transcribed from the submission, 10 epochs each).
STUDENT_TEST_ACC = {
    "2C": (0.9596, 0.9700, 0.9719, 0.9730, 0.9744, 0.9774, 0.9772, 0.9775, 0.9786, 0.9776),
    "2D": (0.9550, 0.9660, 0.9729, 0.9758, 0.9764, 0.9810, 0.9805, 0.9805, 0.9807, 0.9809),
    "2E": (0.9595, 0.9718, 0.9757, 0.9785, 0.9729, 0.9851, 0.9848, 0.9849, 0.9854, 0.9854),
}


def student_best_epochs() -> dict[str, dict]:
    """Per problem, the student's reported number as the best epoch of one run: ``best`` (the
    highest accuracy the log prints on the test set), ``epoch`` (the first epoch with it,
    counted from 1), ``epochs`` and ``final`` (the last epoch's accuracy)."""
    out = {}
    for problem, accs in STUDENT_TEST_ACC.items():
        best = max(accs)
        out[problem] = {"best": best, "epoch": accs.index(best) + 1, "epochs": len(accs), "final": accs[-1]}
    return out


def loss_lower_bound(accuracy: float) -> float:
    """Smallest possible mean cross-entropy (nats) of a classifier with this accuracy.

    A misclassified sample gives its true class a probability of at most 1/2 (another class
    scores at least as high), so it contributes at least ln 2; correct ones contribute >= 0.
    """
    return (1.0 - accuracy) * math.log(2.0)


def last_batch_loss_bug(name: str = "mlp-100", batch: int = 32) -> dict:
    """Reproduce a common way of printing an impossibly small validation loss.

    The mean loss of the *last* batch divided by the size of the whole set, next to the
    correct mean loss per sample, for the stored model of ``name`` on the validation split.
    """
    from nnlab.data import mnist

    model = store.load_model(name)
    x, y = mnist("val")
    with torch.inference_mode():
        logits = model(x)
        correct_loss = float(F.cross_entropy(logits, y))
        n_last = len(x) % batch or batch
        last = float(F.cross_entropy(logits[-n_last:], y[-n_last:]))
        acc = float((logits.argmax(1) == y).double().mean())
    return {"correct": correct_loss, "buggy": last / len(x), "accuracy": acc,
            "bound": loss_lower_bound(acc)}


def softmax_pitfall() -> dict:
    """Mean ± std test accuracy and final losses with and without a Softmax before the loss."""
    out = {}
    for v in ("problem-recipe", "softmax-last"):
        s = store.summary("mlp-ablation", variant=v)
        rs = store.runs("mlp-ablation", v)
        out[v] = {"test_acc": s["mean"], "test_std": s["std"],
                  "train_loss": statistics.fmean(r["history"]["train_loss"][-1] for r in rs),
                  "first_epoch_val": statistics.fmean(r["history"]["val_acc"][0] for r in rs)}
    out["gap"] = out["problem-recipe"]["test_acc"] - out["softmax-last"]["test_acc"]
    return out


def softmax_accuracy_sentence() -> str:
    """What the seeds say about the double softmax's accuracy, worded by :func:`softmax_pitfall_tests`."""
    t = softmax_pitfall_tests()
    text = (f"Seed by seed, on test: {t['test'].verdict()} ({t['test'].describe()}); on validation: "
            f"{t['val'].report()}. ")
    if not (t["test"].detected or t["val"].detected):
        return text + "At three seeds any accuracy loss is not detectable."
    return text + "The accuracy loss is detectable."


def softmax_pitfall_tests() -> dict[str, stats.Comparison]:
    """The double-softmax network against the correct one (same recipe and seeds), paired by
    seed on validation (``val``) and test (``test``) accuracy."""
    names = ("the double softmax", "the logits")
    return {m: compare_runs(("mlp-ablation", "softmax-last"), ("mlp-ablation", "problem-recipe"), f"{m}_acc", names)
            for m in ("val", "test")}


# ---------------------------------------------------------------------------------------
# Depth versus width


def depth_width_table(budget: int, suffix: str = "") -> pd.DataFrame:
    """Per variant: widths, depth, parameters, validation and test accuracy (mean ± std), from
    the sweep ``depth-width-{budget}{suffix}`` (``suffix="-long"``: the 12-epoch sweeps)."""
    name = f"depth-width-{budget}{suffix}"
    exp = E.get(name)
    rows = []
    for v in exp.variants:
        info = dict(v.info)
        val = store.summary(name, "val_acc", v.name)
        test = store.summary(name, "test_acc", v.name)
        rows.append({"variant": v.name, "widths": info["widths"], "depth": info["depth"],
                     "parameters": count_parameters(build(v.spec, exp.data.input_shape)), "val_mean": val["mean"],
                     "val_std": val["std"], "test_mean": test["mean"], "test_std": test["std"]})
    return pd.DataFrame(rows).set_index("variant")


def depth_width_report() -> pd.DataFrame:
    """The three depth-versus-width sweeps in one table, in readers' words: budget, network,
    hidden widths, parameters, validation and test accuracy (%, mean ± std over seeds)."""
    rows = []
    for b in BUDGETS:
        for i, (name, r) in enumerate(depth_width_table(b).iterrows()):
            rows.append({"budget (hidden units)": str(b) if i == 0 else "", "network": name,
                         "hidden widths": r["widths"].replace("-", "\u2011"),  # no line break inside
                         "parameters": int(r["parameters"]),
                         "validation accuracy (%)": fmt_pm(r["val_mean"], r["val_std"]),
                         "test accuracy (%)": fmt_pm(r["test_mean"], r["test_std"])})
    return pd.DataFrame(rows)


def depth_width_summary() -> dict:
    """For each budget: the best variant by validation accuracy, and best depth-1 vs best deeper."""
    out = {}
    for b in BUDGETS:
        df = depth_width_table(b)
        best = df["val_mean"].idxmax()
        shallow = df[df.depth == 1]["test_mean"].max()
        deeper = df[df.depth > 1]
        best_deep = deeper["val_mean"].idxmax()
        out[b] = {"best": str(best), "best_test": float(df.loc[best, "test_mean"]),
                  "best_depth": int(df.loc[best, "depth"]), "shallow_test": float(shallow),
                  "best_deep": str(best_deep), "best_deep_test": float(df.loc[best_deep, "test_mean"]),
                  "deep_minus_shallow": float(df.loc[best_deep, "test_mean"] - shallow),
                  "depth4_equal_test": float(df.loc["equal-4", "test_mean"]),
                  "params_shallow": int(df[df.depth == 1]["parameters"].iloc[0]),
                  "params_best_deep": int(df.loc[best_deep, "parameters"])}
    return out


def plot_depth_width():
    """Validation and test accuracy against depth, one panel per budget (two to a row, the
    legend in the spare cell), equal vs tapering widths."""
    fig, axes, spare = plots.panel_grid(len(BUDGETS), panel_height=2.6)
    styles = (("equal", "o", "equal widths"), ("taper", "s", "tapering"))
    for ax, b in zip(axes, BUDGETS):
        df = depth_width_table(b)
        for k, (shape, marker, name) in enumerate(styles):
            sub = df[[i.startswith(shape) or (shape == "taper" and d == 1)
                      for i, d in zip(df.index, df.depth)]].sort_values("depth")
            for metric, split, colour, offset in (("val", "validation", plots.PALETTE[0 + 2 * k], -0.06),
                                                  ("test", "test", plots.PALETTE[1 + 2 * k], 0.06)):
                ax.errorbar(sub.depth + offset + 0.03 * k, sub[f"{metric}_mean"] * 100, yerr=sub[f"{metric}_std"] * 100,
                            marker=marker, ms=4, color=colour, capsize=3, label=f"{name}, {split}")
        ax.set_title(f"budget {b} hidden units")
        ax.set_xlabel("hidden layers")
        ax.set_xticks([1, 2, 3, 4])
    for ax in axes[::2]:
        ax.set_ylabel("accuracy (%)")
    plots.legend(fig, axes, spare)
    return fig


def ablation_table() -> pd.DataFrame:
    """The 100-unit ablation: one change at a time from the problem set's recipe. Accuracies
    in % (mean ± std over seeds); ``test_mean`` keeps the mean test accuracy as a number."""
    name = "mlp-ablation"
    rows = []
    for v in E.get(name).variants:
        test = store.summary(name, "test_acc", v.name)
        val = store.summary(name, "val_acc", v.name)
        rows.append({"recipe": dict(v.info)["label"], "validation accuracy (%)": fmt_pm(val["mean"], val["std"]),
                     "test accuracy (%)": fmt_pm(test["mean"], test["std"]), "test_mean": test["mean"]})
    return pd.DataFrame(rows)


def rank_agreement(budget: int) -> float:
    """Spearman correlation between validation and test accuracy across a sweep's variants."""
    df = depth_width_table(budget)
    return stats.rank_correlation(df["val_mean"], df["test_mean"])


# ---------------------------------------------------------------------------------------
# Added after review: real recipes, equal-epoch comparisons, the softmax pitfall's gradients,
# and the longer depth-width sweeps.

EQUAL_EPOCHS = {"mlp-1000": ("mlp-1000-shift-40", "shift-40")}  # budget experiment -> 40-epoch shift run


def reported_recipes() -> dict:
    """The training recipe of every candidate of the three budget experiments, and of the
    40-epoch shift run of the 1000-unit network, grouped: one column per distinct recipe,
    headed by the runs that used it (the reported ones marked)."""
    groups: dict = {}
    names = [(n, v.name) for n in BUDGET_EXPERIMENTS for v in E.get(n).variants]
    names += list(EQUAL_EPOCHS.values())
    for name, variant in names:
        exp = E.get(name)
        cfg = exp.train_config(exp.variant(variant))
        chosen = name in BUDGET_EXPERIMENTS and store.chosen_variant(name) == variant
        groups.setdefault(cfg, []).append(f"{name} {variant}" + (" (reported)" if chosen else ""))
    return {", ".join(runs): cfg for cfg, runs in groups.items()}


def equal_epoch_comparison() -> dict:
    """Shift against elastic distortions for the 1000-unit network at 40 epochs each: validation
    and test accuracy (mean, std over seeds) of both, the 25-epoch shift candidate's, and the
    validation differences elastic minus shift (at 25 and at 40 epochs for shift)."""
    name = "mlp-1000"
    other, variant = EQUAL_EPOCHS[name]
    out = {}
    for key, (exp, v) in {"elastic": (name, "elastic"), "shift25": (name, "shift"),
                          "shift40": (other, variant)}.items():
        val, test = store.summary(exp, "val_acc", v), store.summary(exp, "test_acc", v)
        out[key] = {"val": val["mean"], "val_std": val["std"], "test": test["mean"], "test_std": test["std"],
                    "epochs": E.get(exp).train_config(E.get(exp).variant(v)).epochs, "n": val["n"]}
    out["val_gap_25"] = out["elastic"]["val"] - out["shift25"]["val"]
    out["val_gap_40"] = out["elastic"]["val"] - out["shift40"]["val"]
    out["test_gap_40"] = out["elastic"]["test"] - out["shift40"]["test"]
    return out


def equal_epoch_table() -> pd.DataFrame:
    """The 1000-unit network's augmentations side by side with their epochs (accuracy in %)."""
    c = equal_epoch_comparison()
    labels = {"shift25": "random shifts (mlp-1000 candidate)", "shift40": "random shifts (mlp-1000-shift-40)",
              "elastic": "mild elastic field + affine (mlp-1000 candidate, reported)"}
    return pd.DataFrame([{"augmentation": labels[k], "epochs": c[k]["epochs"],
                          "validation accuracy (%)": fmt_pm(c[k]["val"], c[k]["val_std"]),
                          "test accuracy (%)": fmt_pm(c[k]["test"], c[k]["test_std"])}
                         for k in ("shift25", "shift40", "elastic")])


def recipe_changes(base, cfg, base_spec=None, spec=None) -> str:
    """Every setting in which a training recipe (and model spec) differs from ``base``, in
    readers' words, e.g. ``"batch 32 → 128; epochs 10 → 40"``; ``"none"`` when nothing does."""
    words = {"optimizer": "optimiser", "lr": "learning rate (peak)", "schedule": "schedule",
             "batch_size": "batch", "epochs": "epochs", "augment": "augmentation",
             "weight_decay": "weight decay", "label_smoothing": "label smoothing"}
    changes = []
    for field, word in words.items():
        a, b = getattr(base, field), getattr(cfg, field)
        if field == "schedule" and a != b:
            a, b = (f"{x} (warm-up {c.warmup:g} of the steps)" if x == "onecycle" else x
                    for x, c in ((a, base), (b, cfg)))
        if a != b:
            changes.append(f"{word} {a:g} → {b:g}" if isinstance(a, float) and not isinstance(a, bool)
                           else f"{word} {a} → {b}")
    if base_spec is not None and spec is not None and tuple(base_spec) != tuple(spec):
        extra = [s for s in spec if s not in base_spec]
        changes.append("adds " + ", ".join(extra) if extra else "different layers")
    return "; ".join(changes) or "none"


def ablation_rows() -> pd.DataFrame:
    """The mlp-ablation runs with every change from the problem recipe spelled out (not one
    change per row: the one-cycle rows change four settings at once). Accuracies in %;
    ``test_mean`` keeps the mean test accuracy and ``changes`` the number of changed settings."""
    name = "mlp-ablation"
    exp = E.get(name)
    base = exp.variant("problem-recipe")
    rows = []
    for v in exp.variants:
        test = store.summary(name, "test_acc", v.name)
        val = store.summary(name, "val_acc", v.name)
        text = recipe_changes(exp.train_config(base), exp.train_config(v), base.spec, v.spec)
        tests = ablation_tests().get(v.name)
        rows.append({"run": v.name, "changes from the problem recipe": text,
                     "validation accuracy (%)": fmt_pm(val["mean"], val["std"]),
                     "test accuracy (%)": fmt_pm(test["mean"], test["std"]),
                     "validation, paired by seed": tests["val"].report() if tests else "",
                     "test, paired by seed": tests["test"].report() if tests else "",
                     "test_mean": test["mean"], "changes": 0 if text == "none" else text.count(";") + 1})
    return pd.DataFrame(rows)


ABLATION_BASELINES = {"softmax-last": "problem-recipe", "onecycle": "problem-recipe", "onecycle-shift": "onecycle"}


def ablation_tests() -> dict[str, dict[str, stats.Comparison]]:
    """Each ablation row against the row it changes (:data:`ABLATION_BASELINES`), paired by
    seed on validation (``val``) and on test (``test``) accuracy."""
    return {v: {m: compare_runs(("mlp-ablation", v), ("mlp-ablation", b), f"{m}_acc") for m in ("val", "test")}
            for v, b in ABLATION_BASELINES.items()}


def _grad_norm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return float(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())))


def example_factors(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """How a final Softmax re-weights the examples, for a network whose last layer is one.

    Per example, the norm of the double-softmax loss's gradient with respect to the logits
    ``z`` (the input of the final Softmax) divided by the norm of ``softmax(z) - onehot(y)``,
    the gradient the correct loss would give at the same logits. Returns the median of that
    ratio over correctly classified (``right``) and misclassified (``wrong``) examples and the
    number of misclassified ones (``n_wrong``). Adam removes a common scale of the gradient,
    not a difference between examples, so the ratio of the two medians is what matters.
    """
    with torch.no_grad():
        z = model[:-1](x)
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(torch.softmax(z, 1), y, reduction="sum"), z)
    q = torch.softmax(z.detach(), 1)
    ratio = grad.norm(dim=1) / (q - F.one_hot(y, q.shape[1])).norm(dim=1)
    right = q.argmax(1) == y
    return {"right": float(ratio[right].median()) if right.any() else math.nan,
            "wrong": float(ratio[~right].median()) if (~right).any() else math.nan,
            "n_wrong": int((~right).sum())}


def softmax_gradients(checkpoints: tuple[int, ...] = (0, 100, 300, 600), batch: int = 32,
                      probe: int = 1000, seed: int = 0) -> dict:
    """Gradient norms with and without a final Softmax in front of ``CrossEntropyLoss``.

    Two copies of the 100-unit MLP start from the same weights (a Softmax layer has none) and
    train side by side with the problem set's recipe (Adam, learning rate 1e-3, batch 32) on the
    same batches of training images. At each checkpoint (optimiser steps) the norm of the whole
    gradient of the mean loss over a fixed probe of ``probe`` training images is measured for
    each model; ``init_ratio`` is the ratio at step 0, on identical weights, where the extra
    softmax is the only difference. Returns checkpoints, ``logits`` and ``softmax`` norm lists,
    their ratios, and ``factors``: :func:`example_factors` of the double-softmax network on the
    probe at each checkpoint.
    """
    from nnlab.data import MNIST, mnist
    from nnlab.models import mlp

    x, y = mnist("train")
    xp, yp = x[:probe], y[:probe]
    torch.manual_seed(seed)
    plain = build(mlp([100], classes=MNIST), MNIST)
    doubled = build(mlp([100], softmax_last=True, classes=MNIST), MNIST)
    doubled.load_state_dict(plain.state_dict())
    models = {"logits": plain, "softmax": doubled}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(seed)
    norms: dict[str, list[float]] = {k: [] for k in models}
    factors = []
    for step in range(max(checkpoints) + 1):
        if step in checkpoints:
            for k, m in models.items():
                norms[k].append(_grad_norm(m, xp, yp))
            factors.append(example_factors(doubled, xp, yp))
        idx = torch.randint(len(x), (batch,), generator=gen)
        for k, m in models.items():
            opts[k].zero_grad()
            F.cross_entropy(m(x[idx]), y[idx]).backward()
            opts[k].step()
    ratios = [s / n for s, n in zip(norms["softmax"], norms["logits"])]
    return {"checkpoints": list(checkpoints), **norms, "ratios": ratios, "init_ratio": ratios[0],
            "factors": factors}


def elastic_settings() -> dict:
    """The settings of ``augment="elastic"`` as :func:`nnlab.augment.distort` applies them by
    default: displacement bound at the grid nodes (pixels), grid size and node count, largest
    rotation (degrees) and scaling (%)."""
    import inspect

    from nnlab.augment import distort

    d = {k: p.default for k, p in inspect.signature(distort).parameters.items()}
    return {"strength": d["elastic_strength"], "grid": d["elastic_grid"], "nodes": d["elastic_grid"] ** 2,
            "rotate": d["max_rotate"], "scale_pct": 100 * d["max_scale"]}


def per_seed(name: str, variant: str, metric: str = "val_acc") -> dict[int, float]:
    """A stored variant's ``metric`` (``val_acc``, ``test_acc``) per seed."""
    return {r["seed"]: r[metric] for r in store.runs(name, variant)}


def compare_runs(a: tuple[str, str], b: tuple[str, str], metric: str = "val_acc",
                 names: tuple[str, str] | None = None) -> stats.Comparison:
    """Two stored variants, each ``(experiment, variant)``, compared over seeds by
    :func:`nnlab.stats.compare` (paired by seed where they share seeds, as every sweep here
    does); the verdict calls them by their variant names unless ``names`` says otherwise."""
    return stats.compare(per_seed(*a, metric), per_seed(*b, metric), names=names or (a[1], b[1]))


def equal_epoch_test() -> stats.Comparison:
    """Elastic against shifts for the 1000-unit network, both 40 epochs, on validation."""
    other, variant = EQUAL_EPOCHS["mlp-1000"]
    return compare_runs(("mlp-1000", "elastic"), (other, variant), names=(MILD_ELASTIC, "random shifts"))


def augmentation_tests() -> dict[int, stats.Comparison]:
    """Per budget, the mild elastic field against random shifts at equal training length, on
    validation and paired by seed: the two candidates of ``mlp-100`` and ``mlp-200`` (both 40
    epochs), and for 1000 units :func:`equal_epoch_test`."""
    out = {}
    for budget, name in zip(BUDGETS, BUDGET_EXPERIMENTS):
        exp = E.get(name)
        epochs = {exp.train_config(v).epochs for v in exp.variants}
        out[budget] = (compare_runs((name, "elastic"), (name, "shift"), names=(MILD_ELASTIC, "random shifts"))
                       if len(epochs) == 1 else equal_epoch_test())
    return out


def augmentation_verdict() -> str:
    """One sentence: the two augmentations at equal length, budget by budget, in the tests' words."""
    parts = [f"at {b} units, {c.report()}" for b, c in augmentation_tests().items()]
    return ("At equal training length, compared seed by seed on validation: " + "; ".join(parts) + ".")


def equal_epoch_verdict() -> str:
    """One sentence on the 1000-unit comparison at equal epochs, worded from its test."""
    c = equal_epoch_test()
    if not c.detected:
        return (f"Seed by seed, the paired comparison on validation finds {c.report()}, so the two "
                "augmentations cannot be told apart for the 1000-unit network; the elastic candidate "
                "stays the reported one because it was chosen before this comparison, not because it "
                "is shown to be better.")
    return f"At equal length, seed by seed on validation: {c.verdict()}."


def softmax_gradient_table(grads: dict) -> pd.DataFrame:
    """:func:`softmax_gradients` as a table: step, both gradient norms and their ratio, and the
    double-softmax network's median per-image factors (:func:`example_factors`) on the probe."""
    return pd.DataFrame({"optimiser step": grads["checkpoints"],
                         "gradient norm, logits": [f"{g:.3f}" for g in grads["logits"]],
                         "gradient norm, final Softmax": [f"{g:.3f}" for g in grads["softmax"]],
                         "ratio": [f"{r:.2f}" for r in grads["ratios"]],
                         "per-image factor, right": [f"{f['right']:.3f}" for f in grads["factors"]],
                         "per-image factor, wrong": [f"{f['wrong']:.3f}" for f in grads["factors"]],
                         "images wrong": [f["n_wrong"] for f in grads["factors"]]})


# ---------------------------------------------------------------------------------------
# Depth versus width: what the sweeps support, and the longer sweeps

LONG_BUDGETS = (100, 200, 1000)  # the budgets whose sweep was also trained for 12 epochs


def depth_width_verdicts(suffix: str = "") -> dict:
    """Per budget, from the sweep ``depth-width-{budget}{suffix}``: the best network by
    validation and its depth; the best deeper network by validation; and for validation and
    test accuracy the comparison of the best deeper network with the single hidden layer over
    seeds (:func:`compare_runs`, paired by seed): ``{m}_gap_pts`` (deeper minus one layer, in
    points), ``{m}_detected``, ``{m}_p``, ``{m}_verdict`` (the phrase) and ``{m}_report`` (the
    phrase with its evidence), for ``m`` in ``val``, ``test``."""
    out = {}
    budgets = BUDGETS if not suffix else LONG_BUDGETS
    for b in budgets:
        name = f"depth-width-{b}{suffix}"
        df = depth_width_table(b, suffix)
        best = df["val_mean"].idxmax()
        deep = df[df.depth > 1]["val_mean"].idxmax()
        row = {"best": str(best), "best_depth": int(df.loc[best, "depth"]), "best_deep": str(deep),
               "best_deep_depth": int(df.loc[deep, "depth"])}
        for m in ("val", "test"):
            c = compare_runs((name, deep), (name, "equal-1"), f"{m}_acc")
            row.update({f"{m}_gap_pts": 100 * c.difference, f"{m}_detected": c.detected, f"{m}_p": c.p,
                        f"{m}_verdict": c.verdict(), f"{m}_report": c.report()})
        out[b] = row
    return out


def val_by_epoch(budget: int, suffix: str = "-long") -> pd.DataFrame:
    """Mean validation accuracy over seeds after each epoch, one column per variant."""
    name = f"depth-width-{budget}{suffix}"
    cols = {}
    for v in E.get(name).variants:
        hs = np.array([r["history"]["val_acc"] for r in store.runs(name, v.name)])
        cols[v.name] = hs.mean(0)
    return pd.DataFrame(cols, index=pd.RangeIndex(1, len(next(iter(cols.values()))) + 1, name="epoch"))


def depth_order_by_epoch(budget: int, suffix: str = "-long") -> dict:
    """How the ranking of depths (each depth represented by its best network on validation)
    evolves over the epochs of a long sweep: per epoch the order of depths, best first, and the
    best network; ``settled``: the first epoch from which the order of depths no longer
    changes; ``best_settled``: the first epoch from which the best network no longer changes."""
    df = val_by_epoch(budget, suffix)
    depth = {v.name: dict(v.info)["depth"] for v in E.get(f"depth-width-{budget}{suffix}").variants}
    orders, bests = [], []
    for _, row in df.iterrows():
        per_depth = {d: max(row[n] for n in row.index if depth[n] == d) for d in sorted(set(depth.values()))}
        orders.append(tuple(sorted(per_depth, key=per_depth.get, reverse=True)))
        bests.append(str(row.idxmax()))

    def settled(seq: list) -> int:
        k = len(seq)
        while k > 1 and seq[k - 2] == seq[-1]:
            k -= 1
        return int(df.index[k - 1])

    return {"orders": orders, "bests": bests, "settled": settled(orders), "best_settled": settled(bests),
            "epochs": len(df), "final_order": " > ".join(map(str, orders[-1]))}


def plot_val_by_epoch():
    """Validation accuracy per epoch of the long sweeps (mean over seeds), one panel per budget."""
    fig, axes, spare = plots.panel_grid(len(LONG_BUDGETS), panel_height=2.6)
    for ax, b in zip(axes, LONG_BUDGETS):
        df = val_by_epoch(b)
        for k, col in enumerate(df.columns):
            ax.plot(df.index, df[col] * 100, marker="o" if col.startswith("equal") else "s", ms=3,
                    color=plots.PALETTE[k % len(plots.PALETTE)], label=col)
        ax.set_title(f"budget {b} hidden units, {len(df)} epochs")
        ax.set_xlabel("epoch")
        lo = df.iloc[2:].min().min() * 100
        ax.set_ylim(lo - 0.3, df.max().max() * 100 + 0.2)
    axes[0].set_ylabel("validation accuracy (%)")
    plots.legend(fig, axes, spare)
    return fig


def sweep_length_table() -> pd.DataFrame:
    """Each network of the long sweeps' budgets at 4 and at 12 epochs: validation
    and test accuracy (%, mean ± std over seeds)."""
    rows = []
    for b in LONG_BUDGETS:
        short, long = depth_width_table(b), depth_width_table(b, "-long")
        ep_s, ep_l = (E.get(f"depth-width-{b}{s}").train.epochs for s in ("", "-long"))
        for i, (name, r) in enumerate(short.iterrows()):
            q = long.loc[name]
            rows.append({"budget (hidden units)": str(b) if i == 0 else "", "network": name,
                         "hidden widths": r["widths"].replace("-", "\u2011"),
                         f"validation (%), {ep_s} epochs": fmt_pm(r["val_mean"], r["val_std"]),
                         f"validation (%), {ep_l} epochs": fmt_pm(q["val_mean"], q["val_std"]),
                         f"test (%), {ep_l} epochs": fmt_pm(q["test_mean"], q["test_std"])})
    return pd.DataFrame(rows)


def _against_one_layer(v: dict) -> str:
    """The best deeper network against the single hidden layer, seed by seed, in words."""
    return (f"compared seed by seed with the single hidden layer, the best deeper network, "
            f"{v['best_deep']}, gives on validation: {v['val_report']}; on test: {v['test_report']}")


def depth_width_sentence(budget: int, suffix: str = "") -> str:
    """What one sweep shows, in words computed from its numbers: the best network by
    validation, and the verdicts of the best deeper network against the single hidden layer on
    validation and test accuracy (:func:`depth_width_verdicts`)."""
    v = depth_width_verdicts(suffix)[budget]
    layers = "one hidden layer" if v["best_depth"] == 1 else f"{v['best_depth']} hidden layers"
    return (f"The best network by validation accuracy is {v['best']} ({layers}); "
            f"{_against_one_layer(v)}.")


def depth_spread(budget: int, suffix: str = "-long") -> dict:
    """The best network of each depth by validation (mean over seeds), and the best of those
    against the worst, over seeds (:func:`compare_runs`): ``spread_pts`` (points),
    ``detected``, ``p``, ``verdict``, ``report``, and the two networks ``top``, ``bottom``."""
    name = f"depth-width-{budget}{suffix}"
    df = depth_width_table(budget, suffix)
    best = df.loc[df.groupby("depth")["val_mean"].idxmax()]
    top, bottom = str(best["val_mean"].idxmax()), str(best["val_mean"].idxmin())
    c = compare_runs((name, top), (name, bottom))
    return {"spread_pts": 100 * c.difference, "detected": c.detected, "p": c.p, "verdict": c.verdict(),
            "report": c.report(), "top": top, "bottom": bottom}


def long_sweep_sentence(budget: int) -> str:
    """How the 12-epoch sweep of a budget compares with the 4-epoch one, in words computed
    from the numbers and the verdicts of their tests."""
    short, long = depth_width_verdicts()[budget], depth_width_verdicts("-long")[budget]
    order = depth_order_by_epoch(budget)
    spread = depth_spread(budget)
    same = "the same network as" if short["best"] == long["best"] else "a different network from"
    text = (f"At {order['epochs']} epochs the best network by validation is {long['best']}, {same} "
            f"at 4 epochs ({short['best']}); {_against_one_layer(long)}; at 4 epochs, on validation, "
            f"{short['best_deep']} minus equal-1 was {short['val_gap_pts']:+.2f} points. ")
    ranked = (f"Ranked by their best network's mean, the depths finish in the order {order['final_order']} "
              "(hidden layers, best first; only the top against the bottom is tested, not the neighbours)")
    if not spread["detected"]:
        text += (f"{ranked}, but the top and the bottom of these networks lie "
                 f"{spread['spread_pts']:.2f} points apart, with {spread['report']}, and the order "
                 f"changes from epoch to epoch up to epoch {order['settled']} of {order['epochs']}: it is "
                 "not determined by these runs. ")
    else:
        text += (f"{ranked}: {spread['top']} against {spread['bottom']} gives {spread['report']}. The order "
                 f"of the means holds from epoch {order['settled']} on; the best single network stops "
                 f"changing from epoch {order['best_settled']}. ")
    return text + _gain_sentence(budget)


def _budget_list(budgets: list[int]) -> str:
    return " and ".join(map(str, budgets)) if len(budgets) < 3 else \
        ", ".join(map(str, budgets[:-1])) + f" and {budgets[-1]}"


def depth_verdict_by_budget(suffix: str = "") -> dict[str, list[int]]:
    """The budgets of a set of sweeps grouped by the validation verdict of the best deeper
    network against the single hidden layer: ``one_layer_ahead``, ``deeper_ahead`` and
    ``tied`` (no detectable difference)."""
    groups: dict[str, list[int]] = {"one_layer_ahead": [], "deeper_ahead": [], "tied": []}
    for b, v in depth_width_verdicts(suffix).items():
        key = "tied" if not v["val_detected"] else "deeper_ahead" if v["val_gap_pts"] > 0 else "one_layer_ahead"
        groups[key].append(b)
    return groups


def depth_verdict_sentence(suffix: str = "") -> str:
    """What a set of sweeps says about depth at every budget, from the tests: where one layer
    has the top mean, where the paired test puts it ahead of the best deeper network, where it
    cannot tell them apart, and whether a deeper network is ever ahead."""
    verdicts = depth_width_verdicts(suffix)
    n = len(verdicts)
    top = [b for b, v in verdicts.items() if v["best_depth"] == 1]
    g = depth_verdict_by_budget(suffix)
    epochs = E.get(f"depth-width-{next(iter(verdicts))}{suffix}").train.epochs
    count = f"all {n}" if len(top) == n else f"{len(top)} of {n}"
    text = (f"After {epochs} epochs one hidden layer has the highest mean validation accuracy at {count} "
            "budgets. Compared seed by seed with the best deeper network on validation, ")
    parts = []
    if g["one_layer_ahead"]:
        parts.append(f"one layer is ahead at {_budget_list(g['one_layer_ahead'])} units")
    if g["tied"]:
        parts.append(f"the two cannot be told apart at {_budget_list(g['tied'])} units "
                     "(no detectable difference at three seeds)")
    if g["deeper_ahead"]:
        parts.append(f"the deeper network is ahead at {_budget_list(g['deeper_ahead'])} units")
    text += "; ".join(parts) + "."
    if not g["deeper_ahead"]:
        text += " At no budget is the best deeper network, chosen on validation, ahead of one layer there."
    return text


def budget_spent(budget: int) -> tuple[int, int]:
    """The fewest and the most hidden units any network of the sweep ``depth-width-{budget}``
    has (halving widths rounds some budgets down by a unit or two)."""
    exp = E.get(f"depth-width-{budget}")
    units = [hidden_units(build(v.spec, exp.data.input_shape), input_shape=exp.data.input_shape)
             for v in exp.variants]
    return min(units), max(units)


def legal_sweep_best(budget: int, suffix: str = "") -> dict:
    """The network of the sweep ``depth-width-{budget}{suffix}`` with the highest mean validation
    accuracy among those the budget's problem allows (:data:`nnlab.book.problems.MLP_100` and
    its siblings): ``name``, ``widths``, and the reported model's ``reported`` widths."""
    from nnlab.book import problems
    from nnlab.rules import violations

    rule = {100: problems.MLP_100, 200: problems.MLP_200, 1000: problems.MLP_1000}[budget]
    exp = E.get(f"depth-width-{budget}{suffix}")
    df = depth_width_table(budget, suffix)
    legal = [v.name for v in exp.variants
             if not violations(build(v.spec, exp.data.input_shape), rule, input_shape=exp.data.input_shape)]
    best = str(df.loc[legal, "val_mean"].idxmax())
    reported = E.get(f"mlp-{budget}")
    return {"name": best, "widths": str(df.loc[best, "widths"]),
            "reported": dict(reported.variant(store.chosen_variant(reported.name)).info)["widths"]}


def long_sweep_verdict() -> str:
    """What the long sweeps say together, in words computed from the numbers: at how many
    budgets the ranking of depths is the same at 4 and at 12 epochs and one hidden layer has
    the top mean, at how many the deeper networks gained more from the longer training, and,
    budget by budget, what the paired test says of one layer against the best deeper network."""
    n = len(LONG_BUDGETS)
    orders = {b: (depth_order(b), depth_order(b, "-long")) for b in LONG_BUDGETS}
    gains = {b: length_gains(b) for b in LONG_BUDGETS}
    same = [b for b in LONG_BUDGETS if orders[b][0] == orders[b][1]]
    shallow_best = [b for b in LONG_BUDGETS if orders[b][1][0] == 1]
    deeper_gained = [b for b in LONG_BUDGETS if gains[b]["deeper"] > gains[b]["shallow"]]
    others = [b for b in LONG_BUDGETS if b not in same]
    budgets = (f"{_budget_list(same)} hidden units; not {_budget_list(others)}" if same and others
               else f"{_budget_list(list(LONG_BUDGETS))} hidden units")
    groups = depth_verdict_by_budget("-long")

    def count(xs: list) -> str:
        return f"all {n}" if len(xs) == n else f"{len(xs)} of {n}"

    detected = [b for b in LONG_BUDGETS if gain_test(b).detected]
    every = all(min(g["min_deeper"], g["shallow"]) > 0 for g in gains.values())
    text = (f"The order of the depths' means after 12 epochs equals the one after 4 at {count(same)} budgets "
            f"({budgets}), and one hidden layer has the highest mean validation accuracy at "
            f"{count(shallow_best)}. " + ("Every network gained from the longer training, so the 4-epoch sweeps "
            "under-train all of them; " if every else "Not every network gained from the longer training; ")
            + f"the deeper networks' mean gain exceeds the single layer's at "
            f"{count(deeper_gained)}, detectably (paired by seed) at {count(detected)}. ")
    if len(same) == n and len(groups["one_layer_ahead"]) == n:
        return text + ("The longer training does not change the verdict: at these budgets and with "
                       "this recipe, one wide layer is ahead of the best deeper network on validation.")
    changed = [b for b in LONG_BUDGETS if b not in same]
    if changed:
        text += f"At {count(changed)} budgets the order of the means changes. "
    verdicts = depth_width_verdicts("-long")
    for b in LONG_BUDGETS:
        v = verdicts[b]
        params = depth_width_table(b, "-long")["parameters"]
        deep = f"{v['best_deep']}, {stats.count_words(v['best_deep_depth'])} hidden layers"
        if b in groups["one_layer_ahead"]:
            text += (f"With {b} units, one wide layer stays ahead of the best deeper network ({deep}) on "
                     f"validation: {v['val_verdict']}. ")
            continue
        if b in groups["deeper_ahead"]:
            text += f"With {b} units, the best deeper network ({deep}) is ahead on validation: {v['val_verdict']}"
        else:
            text += (f"With {b} units, one layer and the best deeper network ({deep}) cannot be told apart "
                     f"on validation: {v['val_report']}")
        text += f"; on test: {v['test_report']}."
        if v["val_gap_pts"] > 0:
            fewer = "fewer" if params[v["best_deep"]] < params["equal-1"] else "more"
            text += (f" Its higher validation mean is that of the network chosen on these same runs; it has "
                     f"{fewer} parameters ({params[v['best_deep']]:,} against {params['equal-1']:,}).")
        text += " "
    return text.strip()


def depth_width_conclusion() -> str:
    """The chapter's summary of depth against width, from the short and the long sweeps'
    verdicts (:func:`depth_verdict_by_budget`)."""
    short, long = depth_verdict_by_budget(), depth_verdict_by_budget("-long")
    e_short, e_long = (E.get(f"depth-width-{BUDGETS[0]}{s}").train.epochs for s in ("", "-long"))
    lead = "Seed by seed on validation, one hidden layer is ahead of the best deeper network "
    if short["one_layer_ahead"] == long["one_layer_ahead"]:
        text = lead + (f"only at {_budget_list(short['one_layer_ahead'])} units, after {e_short} and after "
                       f"{e_long} epochs" if short["one_layer_ahead"] else "at no budget")
    else:
        text = lead + (f"at {_budget_list(short['one_layer_ahead']) or 'no'} units after {e_short} epochs and "
                       f"at {_budget_list(long['one_layer_ahead']) or 'no'} after {e_long}")
    tied = sorted(set(short["tied"]) & set(long["tied"]))
    if tied:
        text += f"; at {_budget_list(tied)} units the paired test cannot tell the two apart at either length"
    deeper = sorted(set(short["deeper_ahead"]) | set(long["deeper_ahead"]))
    return text + (f"; the best deeper network is ahead at {_budget_list(deeper)} units." if deeper
                   else "; the best deeper network, chosen on validation, is ahead of it at no budget.")


def length_gains(budget: int) -> dict:
    """Validation gain (points) from 4 to 12 epochs: of the single hidden layer, and the mean
    over the deeper networks."""
    short, long = depth_width_table(budget), depth_width_table(budget, "-long")
    gain = 100 * (long["val_mean"] - short["val_mean"])
    return {"shallow": float(gain["equal-1"]), "deeper": float(gain[long.depth > 1].mean()),
            "min_deeper": float(gain[long.depth > 1].min())}


def depth_order(budget: int, suffix: str = "") -> tuple[int, ...]:
    """Depths ranked by their best network's mean validation accuracy, best first."""
    df = depth_width_table(budget, suffix)
    best = df.groupby("depth")["val_mean"].max()
    return tuple(int(d) for d in best.sort_values(ascending=False).index)


def gain_test(budget: int) -> stats.Comparison:
    """Seed by seed, the validation gain (12 minus 4 epochs) of the deeper networks (mean over
    them) against that of the single hidden layer, paired by seed (the sweeps share seeds)."""
    def gains(variants: list[str]) -> dict[int, float]:
        per = [{s: per_seed(f"depth-width-{budget}-long", v)[s] - x
                for s, x in per_seed(f"depth-width-{budget}", v).items()} for v in variants]
        return {s: float(np.mean([g[s] for g in per])) for s in per[0]}

    deeper = [str(n) for n in depth_width_table(budget).query("depth > 1").index]
    return stats.compare(gains(deeper), gains(["equal-1"]),
                         names=("the deeper networks' gain", "the single layer's gain"))


def _gain_sentence(budget: int) -> str:
    """Every network gained from the longer training (all were under-trained at 4 epochs); the
    deeper networks' mean gain against the single layer's, tested seed by seed; and whether the
    order of the depths' means changed, worded by the test of the top depth against the bottom."""
    g = length_gains(budget)
    c = gain_test(budget)
    same = depth_order(budget) == depth_order(budget, "-long")
    low = min(g["min_deeper"], g["shallow"])
    text = (f"Every network gained from the longer training (the smallest gain is {low:+.2f} points of "
            "validation accuracy), so all of them were under-trained at 4 epochs. " if low > 0 else
            f"Not every network gained from the longer training (the smallest gain is {low:+.2f} points). ")
    text += (f"The deeper networks gained {g['deeper']:+.2f} points on average "
            f"against {g['shallow']:+.2f} for one layer; seed by seed, {c.report()}. ")
    if same:
        return text + "The order of the depths' means is the same at 4 and at 12 epochs."
    if depth_spread(budget)["detected"]:
        return text + "The order of the depths' means changed between 4 and 12 epochs."
    return text + "The order of the depths' means changed between 4 and 12 epochs, but not detectably."


def recipe_overview() -> pd.DataFrame:
    """:func:`reported_recipes` as a table with short column heads (augmentation, epochs) and a
    first row naming the runs that used each recipe."""
    from nnlab.book.report import recipe_table

    recipes = reported_recipes()
    heads = {f"{cfg.augment}, {cfg.epochs} epochs" + (" (reported)" if "(reported)" in runs else ""): cfg
             for runs, cfg in recipes.items()}
    table = recipe_table(heads)
    used = pd.DataFrame([[runs.replace(" (reported)", "") for runs in recipes]], index=["runs"],
                        columns=table.columns)
    table.loc["CPU threads per run"] = [_recorded_threads(runs) for runs in recipes]
    table.loc["augmentation"] = [MILD_ELASTIC.removeprefix("the ") if a == "elastic" else
                                 "random shifts" if a == "shift" else a for a in table.loc["augmentation"]]
    return pd.concat([used, table])


def _recorded_threads(runs: str) -> str:
    """The CPU threads the stored runs of a recipe column record (``"mlp-100 shift, ..."``), or
    ``not recorded`` where runs trained before the field existed lack it."""
    pairs = [r.replace(" (reported)", "").rsplit(" ", 1) for r in runs.split(", ")]
    by_value: dict[str, list[str]] = {}
    for name, variant in pairs:
        for value in sorted({str(r.get("threads", "not recorded")) for r in store.runs(name, variant)}):
            by_value.setdefault(value, []).append(f"{name} {variant}")
    if len(by_value) == 1:
        return next(iter(by_value))
    return "; ".join(f"{value} ({', '.join(runs)})" for value, runs in sorted(by_value.items()))
