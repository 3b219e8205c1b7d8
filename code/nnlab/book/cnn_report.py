"""Part III analyses of the MNIST CNN: inside the model, the dropout sweep, sound validation.

Everything here reads stored results and weights; nothing trains.
"""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import torch

from nnlab import analyses, plots, stats
from nnlab import experiments as E
from nnlab import results as store
from nnlab.book import bn_statistics, cnn_predictions
from nnlab.book.bn_statistics import BN_IMAGES, BN_STATS, reestimate_bn, variance_ratio  # noqa: F401
from nnlab.book.report import candidate_rows, fmt_pm, pct
from nnlab.data import MNIST, mnist, raw_split
from nnlab.models import build, count_parameters


@torch.inference_mode()
def test_predictions(name: str = "cnn", seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) labels of the stored model on the test set: read from the stored
    analysis :data:`nnlab.book.cnn_predictions.ANALYSIS` for the final model's first seed,
    computed otherwise."""
    if name == cnn_predictions.FINAL and seed in (None, E.get(name).seeds[0]):
        stored = analyses.load(cnn_predictions.ANALYSIS)
        return tuple(torch.tensor([int(c) for c in stored[k]]) for k in ("predicted", "true"))
    model = store.load_model(name, seed)
    x, y = mnist("test")
    return model(x).argmax(1), y


def confusion_matrix(pred: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    m = torch.zeros(10, 10, dtype=torch.int64)
    m.index_put_((true, pred), torch.ones_like(true), accumulate=True)
    return m.numpy()


def plot_misclassified(pred: torch.Tensor, true: torch.Tensor, limit: int = 40):
    """The misclassified test digits, titled 'true→predicted'."""
    wrong = (pred != true).nonzero().flatten()[:limit]
    images, _ = raw_split("test")
    cols = 10
    rows = max(1, (len(wrong) + cols - 1) // cols)
    titles = [f"{int(true[i])}→{int(pred[i])}" for i in wrong]
    return plots.digit_grid(images[wrong], true[wrong].tolist(), rows=rows, cols=cols, titles=titles)


def plot_first_layer_filters(name: str = "cnn", seed: int | None = None):
    """The 3x3 kernels of the first convolution, each on its own symmetric colour scale."""
    import matplotlib.pyplot as plt

    model = store.load_model(name, seed)
    w = next(m for m in model if isinstance(m, torch.nn.Conv2d)).weight.detach()[:, 0]
    cols = 8
    rows = (len(w) + cols - 1) // cols
    cell = min(0.7, plots.TEXT_WIDTH / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell))
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(w):
            lim = float(w[i].abs().max())
            ax.imshow(w[i].numpy(), cmap=plots.DIVERGING, vmin=-lim, vmax=lim)
    return fig


def dropout_sweep_table() -> pd.DataFrame:
    """One row per dropout probability ``p`` (the index): the last epoch's training loss and
    training accuracy, and the validation and test accuracy (fractions)."""
    name = "dropout-sweep"
    rows = []
    for r in store.runs(name):
        p = dict(E.get(name).variant(r["variant"]).info)["p"]
        rows.append({"p": p, "train_loss": r["history"]["train_loss"][-1], "train_acc": r["history"]["train_acc"][-1],
                     "val_acc": r["val_acc"], "test_acc": r["test_acc"]})
    return pd.DataFrame(rows).sort_values("p").set_index("p")


def dropout_sweep_report(sweep: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`dropout_sweep_table` in readers' words: p as a fraction of nine, the last
    epoch's training loss, accuracies in %."""
    sweep = dropout_sweep_table() if sweep is None else sweep
    return pd.DataFrame({
        "dropout probability p": [("0" if p == 0 else "1" if p == 1 else f"{round(9 * p)}/9") for p in sweep.index],
        "training loss (nats)": [f"{v:.3f}" for v in sweep["train_loss"]],
        "training accuracy (%)": [pct(v) for v in sweep["train_acc"]],
        "validation accuracy (%)": [pct(v) for v in sweep["val_acc"]],
        "test accuracy (%)": [pct(v) for v in sweep["test_acc"]]})


def plot_dropout_sweep():
    import matplotlib.pyplot as plt

    df = dropout_sweep_table()
    fig, ax = plt.subplots(figsize=(plots.TEXT_WIDTH, 3.4))
    ax.plot(df.index, df.val_acc * 100, "o-", label="validation", color=plots.PALETTE[0])
    ax.plot(df.index, df.test_acc * 100, "s--", label="test", color=plots.PALETTE[1])
    ax.set_xlabel("dropout probability p (all dropout layers)")
    ax.set_ylabel("accuracy after one epoch (%)")
    ax.legend()
    return fig


def variant_means(name: str) -> dict[str, dict[str, float]]:
    """Mean validation and test accuracy (``val_acc``, ``test_acc``) over seeds of every
    variant of an experiment, from one read of the store."""
    by_variant: dict[str, list[dict]] = {}
    for r in store.runs(name):
        by_variant.setdefault(r["variant"], []).append(r)
    return {v: {m: statistics.fmean(r[m] for r in rs) for m in ("val_acc", "test_acc")}
            for v, rs in by_variant.items()}


# Stored sweeps with several seeds per candidate (the dropout sweep has one seed: no optimism
# can be measured on it).
OPTIMISM_SWEEPS = ("depth-width-100", "depth-width-200", "depth-width-1000", "depth-width-100-long",
                   "depth-width-200-long", "depth-width-1000-long", "cnn")
#: The sweeps :func:`selection_gap` reads: those of :data:`OPTIMISM_SWEEPS` and the dropout sweep.
GAP_SWEEPS = (*OPTIMISM_SWEEPS, "dropout-sweep")


def selection_gap() -> dict:
    """Pick a candidate by test accuracy versus by validation accuracy, over stored sweeps.

    For each sweep of :data:`GAP_SWEEPS` (candidates = variants, metric = mean over seeds) returns the test accuracy
    of the candidate picked on test and of the one picked on validation. The first is what a
    reader who tunes on the test set would report; the difference is optimism bought by
    selection, not by a better model.
    """
    out = {}
    for name in GAP_SWEEPS:
        means = variant_means(name)
        rows = [(v.name, means[v.name]["val_acc"], means[v.name]["test_acc"]) for v in E.get(name).variants]
        by_test = max(rows, key=lambda r: r[2])
        by_val = max(rows, key=lambda r: r[1])
        out[name] = {"candidates": len(rows), "picked_by_test": by_test[0], "picked_by_val": by_val[0],
                     "test_of_test_pick": by_test[2], "test_of_val_pick": by_val[2],
                     "gap": by_test[2] - by_val[2]}
    return out


SWEEP_WORDS = {"cnn": "the CNN's candidates", "dropout-sweep": "the dropout sweep",
               "depth-width-100": "the 4-epoch depth-versus-width sweep at 100 hidden units",
               "depth-width-200": "the 4-epoch sweep at 200 units", "depth-width-1000": "the 4-epoch sweep at 1000 units",
               "depth-width-100-long": "the 12-epoch depth-versus-width sweep at 100 units",
               "depth-width-200-long": "the 12-epoch sweep at 200 units",
               "depth-width-1000-long": "the 12-epoch sweep at 1000 units"}


def variant_words(name: str, variant: str) -> str:
    """A variant of a stored sweep in readers' words: hidden widths (``50-50``), a CNN
    candidate (:func:`candidate_label`) or a dropout probability (``p = 4/9``)."""
    exp = E.get(name)
    v = exp.variant(variant)
    if name == "cnn":
        return candidate_label(name, variant)
    info = dict(v.info)
    if "p" in info:
        return f"p = {round(9 * info['p'])}/9" if 0 < info["p"] < 1 else f"p = {info['p']:g}"
    widths = [layer.split()[1] for layer in v.spec if layer.startswith("linear")][:-1]
    return "hidden layers " + "-".join(widths)


def selection_gap_note() -> str:
    """Markdown sentences on :func:`selection_gap`, in readers' words (:data:`SWEEP_WORDS`):
    where picking by test would have reported more."""
    gaps = selection_gap()
    differ = [f"{SWEEP_WORDS[name]} by {100 * g['gap']:.2f} points ({variant_words(name, g['picked_by_test'])} "
              f"instead of {variant_words(name, g['picked_by_val'])})"
              for name, g in gaps.items() if g["picked_by_test"] != g["picked_by_val"]]
    agree = [SWEEP_WORDS[name] for name, g in gaps.items() if g["picked_by_test"] == g["picked_by_val"]]
    if not differ:
        return f"In every stored sweep ({', '.join(agree)}) the two picks happen to agree."
    sentence = ("Over the same sweeps and the sweep of dropout probabilities (one seed per candidate), the candidate "
                "with the best test accuracy beats the one chosen on validation, in test accuracy, "
                f"in {'; and in '.join(differ)}: the selection is the only thing that differs.")
    if agree:
        listed = agree[0] if len(agree) == 1 else f"{', '.join(agree[:-1])} and {agree[-1]}"
        sentence += f" In {listed} the two picks agree."
    return sentence




def sweep_optimism(name: str) -> float:
    """Optimism of selecting on the set you report, in one stored sweep (accuracy units).

    Each seed in turn is the 'selection' seed: the variant with the best test accuracy on it
    is picked, and that number is compared with the same variant's mean test accuracy on the
    other seeds. Returns the mean of that overstatement over the selection seeds; every
    variant must have the same seeds.
    """
    table = [[r["test_acc"] for r in sorted(store.runs(name, v.name), key=lambda r: r["seed"])]
             for v in E.get(name).variants]
    acc = np.array(table)  # variants x seeds
    gaps = []
    for s in range(acc.shape[1]):
        best = int(acc[:, s].argmax())
        gaps.append(acc[best, s] - np.delete(acc[best], s).mean())
    return round(float(np.mean(gaps)), 12) + 0.0  # exactly 0 (not -0) when one variant wins on every seed


def selection_optimism(names: tuple[str, ...] = OPTIMISM_SWEEPS) -> dict:
    """:func:`sweep_optimism` of every sweep in ``names``: ``per_sweep`` (name -> optimism),
    its ``low`` and ``high`` with the sweeps that give them (``low_sweep``, ``high_sweep``),
    and the ``mean`` over sweeps. How large the optimism is depends on the sweep, so a
    sentence should quote the range, not one number."""
    per = {name: sweep_optimism(name) for name in names}
    low, high = min(per, key=per.get), max(per, key=per.get)
    return {"per_sweep": per, "low": per[low], "high": per[high], "low_sweep": low, "high_sweep": high,
            "mean": float(np.mean(list(per.values()))), "sweeps": len(per)}


def optimism_words(opt: dict) -> str:
    """:func:`selection_optimism`'s result as the clause the CNN chapter prints: in how many
    sweeps the picked number is higher (by up to the largest optimism) and in which it is equal."""
    per = opt["per_sweep"]
    count = stats.count_words
    equal = [name for name, value in per.items() if abs(value) < 1e-9]
    higher = [name for name, value in per.items() if value >= 1e-9]
    lower = [name for name, value in per.items() if value <= -1e-9]
    words = (f"higher in {count(len(higher))} of the {count(len(per))} sweeps, with no model having "
             f"improved, by up to {100 * opt['high']:.2f} points (on {SWEEP_WORDS[opt['high_sweep']]})")
    if lower:
        words += f", lower in {count(len(lower))}"
    if equal:
        words += f", and equal in {count(len(equal))} (" + " and ".join(SWEEP_WORDS[n] for n in equal) + ")"
    return words


def seed_spread(name: str = "cnn") -> dict:
    s = store.summary(name)
    return {"std": s["std"], "range": s["max"] - s["min"], "errors_min": round((1 - s["max"]) * 10000),
            "errors_max": round((1 - s["min"]) * 10000)}


def bn_recovery_share(bn: pd.DataFrame, p: float = 8 / 9) -> dict:
    """How much of the collapse at dropout ``p`` re-estimating batch norm's statistics repairs.

    ``bn`` is the batch-norm table of the chapter (columns ``p``, ``val_acc``,
    ``fixed_val_acc``, one row per seed). The yardstick is the dropout sweep's model without
    dropout (``p = 0``, one epoch, the sweep's seed): ``share`` is (mean validation accuracy
    with re-estimated statistics minus with stored ones) over (the ``p = 0`` model's minus
    with stored ones). Also returns those three accuracies (``stored``, ``fixed``, ``p0``),
    the ``gain`` and ``gap`` in accuracy units, and ``share_low`` and ``share_high``: the
    smallest and largest share over the seeds, each seed's gain over its own gap; and
    ``p0_version``, the nnlab version that trained the yardstick.
    """
    rows = bn[np.isclose(bn["p"], p)]
    stored, fixed = float(rows["val_acc"].mean()), float(rows["fixed_val_acc"].mean())
    p0 = float(dropout_sweep_table()["val_acc"].iloc[0])
    shares = [(f - v) / (p0 - v) for v, f in zip(rows["val_acc"].astype(float), rows["fixed_val_acc"].astype(float))]
    return {"stored": stored, "fixed": fixed, "p0": p0, "gain": fixed - stored, "gap": p0 - stored,
            "share": (fixed - stored) / (p0 - stored), "share_low": min(shares), "share_high": max(shares),
            "p0_version": _runs_by_p("dropout-sweep")[0.0][0]["nnlab_version"]}


def regulariser_reference() -> dict:
    """The reference CNN of the regulariser study: its mean validation accuracy over the seeds of
    ``cnn-regularisers`` (``mean``, ``n``), and the same configuration's single run in the
    validation study (``study``, its seed ``study_seed``) next to the regularisers' run of that
    seed (``same_seed``), with the nnlab version that trained each (``study_version``,
    ``version``). The two experiments share spec and recipe but not the code that trained them."""
    ref = {r["seed"]: r for r in store.runs(REGULARISERS, "reference")}
    (study,) = store.runs(STUDY, STUDY_REFERENCE)
    return {"mean": statistics.fmean(r["val_acc"] for r in ref.values()), "n": len(ref),
            "study": study["val_acc"], "study_seed": study["seed"], "same_seed": ref[study["seed"]]["val_acc"],
            "study_version": study["nnlab_version"],
            "version": ", ".join(sorted({r["nnlab_version"] for r in ref.values()}))}


def cnn_summary() -> dict:
    s = store.summary("cnn")
    v = store.summary("cnn", "val_acc")
    exp = E.get("cnn")
    chosen = store.chosen_variant("cnn")
    variant = exp.variant(chosen)
    model = build(variant.spec, exp.data.input_shape)
    recipe = exp.train_config(variant)
    return {"mean": s["mean"], "std": s["std"], "min": s["min"], "max": s["max"], "n": s["n"],
            "seeds": ", ".join(map(str, s["seeds"])), "val_mean": v["mean"], "val_std": v["std"],
            "errors_mean": (1 - s["mean"]) * 10000, "params": count_parameters(model),
            "epochs": recipe.epochs, "batch": recipe.batch_size, "augment": recipe.augment,
            "seconds_per_epoch": _seconds_per_epoch("cnn", chosen),
            "pm": fmt_pm(s["mean"], s["std"]), "chosen": chosen,
            "candidates": len(exp.variants)}


FINAL = "cnn-final"


def _final_pairs() -> tuple[list[int], dict[int, float], dict[int, float]]:
    """The seeds both fits have, and per seed the test accuracy of the chosen candidate (fit
    on the training split) and of the final model (refit on training and validation images)."""
    before = {r["seed"]: r["test_acc"] for r in store.runs("cnn", store.chosen_variant("cnn"))}
    after = {r["seed"]: r["test_acc"] for r in store.runs(FINAL)}
    return sorted(before.keys() & after.keys()), before, after


def _fit_sizes() -> dict[str, int]:
    return {split: len(raw_split(split)[1]) for split in ("train", "val")}


def final_summary() -> dict:
    """Test accuracy of the final model (the chosen recipe refit on training and validation
    images, ``cnn-final``) and its change from the same recipe fit on the training split alone,
    seed by seed."""
    s = store.summary(FINAL)
    seeds, before, after = _final_pairs()
    paired = [after[seed] - before[seed] for seed in seeds]
    test = final_test()
    sizes = _fit_sizes()
    return {"mean": s["mean"], "std": s["std"], "min": s["min"], "max": s["max"], "n": s["n"],
            "pm": fmt_pm(s["mean"], s["std"]), "errors_mean": (1 - s["mean"]) * 10000,
            "seeds": ", ".join(map(str, s["seeds"])), "images": sum(sizes.values()),
            "val_images": sizes["val"], "change_pts": 100 * statistics.fmean(paired),
            "change_se_pts": 100 * statistics.stdev(paired) / len(paired) ** 0.5 if len(paired) > 1 else float("nan"),
            "seeds_better": sum(d > 0 for d in paired), "seeds_worse": sum(d < 0 for d in paired),
            "paired": len(paired), "p": test.p, "detected": test.detected, "verdict": test.verdict(),
            "report": test.report()}


def final_test() -> stats.Comparison:
    """The refit against the fit on the training split alone, test accuracy, paired by seed."""
    seeds, before, after = _final_pairs()
    return stats.compare({s: after[s] for s in seeds}, {s: before[s] for s in seeds},
                         names=("the refit", "the fit on the training split"))


def final_note(summary: dict | None = None) -> str:
    """Markdown: what the refit on the validation images changed, seed for seed, and the
    verdict of the paired test (:func:`final_test`). ``summary`` is :func:`final_summary`'s
    result, if the caller has it already."""
    f = summary or final_summary()
    direction = "raised" if f["change_pts"] > 0 else "lowered" if f["change_pts"] < 0 else "left"
    return (f"Fitting the extra {f['val_images']:,} images {direction} mean test accuracy by "
            f"{abs(f['change_pts']):.2f} points, seed for seed (better on {f['seeds_better']} of "
            f"{f['paired']} seeds, worse on {f['seeds_worse']}); the paired test over the seeds finds "
            f"{f['report']}.")


def final_table() -> pd.DataFrame:
    """Per seed and on average: test accuracy (%) and misclassified test images of the chosen
    recipe fit on the training split (the candidate chosen on validation) and refit on
    training and validation images (the final model). Errors are counts for a seed and a mean
    (one decimal) in the last row."""
    n_test = len(mnist("test")[1])
    seeds, before, after = _final_pairs()
    sizes = _fit_sizes()
    table = {"seed": [*map(str, seeds), "mean"]}
    for images, acc in ((sizes["train"], before), (sum(sizes.values()), after)):
        values = [acc[s] for s in seeds] + [statistics.fmean(acc[s] for s in seeds)]
        errors = [(1 - a) * n_test for a in values]
        table[f"fit on {images:,} images: test accuracy (%)"] = [pct(a) for a in values]
        table[f"fit on {images:,} images: errors"] = [f"{e:.0f}" for e in errors[:-1]] + [f"{errors[-1]:.1f}"]
    return pd.DataFrame(table)


def _seconds_per_epoch(name: str, variant: str) -> float:
    return statistics.fmean(sec for r in store.runs(name, variant) for sec in r["history"]["seconds"])


# One change each, on the same seeds: (candidate, the candidate it differs from in one thing).
CANDIDATE_PAIRS = {"width48": ("w48", "w32"), "head256": ("w32-fc256", "w32"),
                   "elastic_w32": ("w32-elastic", "w32"), "elastic_w48": ("w48-elastic", "w48"),
                   "shift_w32": ("w32-shift", "w32"), "shift_w48": ("w48-shift", "w48")}


def candidate_effects(name: str = "cnn") -> dict:
    """Mean validation and test accuracy of a candidate minus those of the candidate it differs
    from in one thing (:data:`CANDIDATE_PAIRS`), keyed ``<pair>_val`` and ``<pair>_test``."""
    means = variant_means(name)
    return {f"{key}_{m}": means[changed][f"{m}_acc"] - means[base][f"{m}_acc"]
            for key, (changed, base) in CANDIDATE_PAIRS.items() for m in ("val", "test")}


def candidate_note(name: str = "cnn") -> str:
    """One sentence on whether the test set agrees with the validation choice."""
    chosen = store.chosen_variant(name)
    test = {v: m["test_acc"] for v, m in variant_means(name).items()}
    best = max(test, key=test.get)
    words = {v: candidate_label(name, v) for v in test}
    if best == chosen:
        return f"The candidate chosen on validation ({words[chosen]}) also has the highest mean test accuracy."
    return (f"On the test set, {words[best]} scored higher than the chosen {words[chosen]} ({pct(test[best])}% against "
            f"{pct(test[chosen])}%, a difference of {(test[best] - test[chosen]) * 10000:.1f} test digits). The "
            "book still reports its choice: switching to the test set's favourite now would be the "
            "selection on the test set whose bias is measured below.")


# How the verdicts call the two sides of each pair: (the changed candidate, the one it changes).
PAIR_WORDS = {"width48": ("48 filters", "32 filters"), "head256": ("a hidden layer of 256", "one linear layer"),
              "elastic_w32": ("affine + field", "affine alone"), "elastic_w48": ("affine + field", "affine alone"),
              "shift_w32": ("shifts", "affine distortions"), "shift_w48": ("shifts", "affine distortions")}


def candidate_pairs_in_images(name: str = "cnn") -> dict:
    """Each one-change pair of :data:`CANDIDATE_PAIRS` on the validation split, in images:
    ``mean`` (the changed candidate's validation errors saved, mean over seeds of the paired
    difference), ``better``/``worse`` (seeds on which it saved/cost images), and the paired
    test over seeds (:func:`nnlab.stats.compare`): ``p``, ``detected``, ``verdict`` and
    ``report`` (in validation images, sides named by :data:`PAIR_WORDS`). ``seed_sd`` is the
    median over candidates of the standard deviation of validation errors over seeds, the
    noise a one-change difference must be compared with."""
    n_val = E.get(name).config()["data"]["val_size"]
    acc = {v.name: {r["seed"]: r["val_acc"] for r in store.runs(name, v.name)} for v in E.get(name).variants}
    out = {}
    for key, (changed, base) in CANDIDATE_PAIRS.items():
        d = np.array([acc[changed][s] - acc[base][s] for s in sorted(acc[base])]) * n_val
        test = stats.compare(acc[changed], acc[base], names=PAIR_WORDS[key], scale=n_val, unit="validation images")
        out[key] = {"mean": float(d.mean()), "better": int((d > 0.5).sum()), "worse": int((d < -0.5).sum()),
                    "seeds": len(d), "p": test.p, "detected": test.detected, "verdict": test.verdict(1),
                    "report": test.report(1)}
    out["seed_sd"] = float(np.median([np.std(list(a.values()), ddof=1) * n_val for a in acc.values()]))
    out["val_images"] = n_val
    return out


def first_width(spec) -> int:
    """Filters of the first convolution of a model spec."""
    return next(m.out_channels for m in build(spec, MNIST.input_shape) if isinstance(m, torch.nn.Conv2d))


# The candidates in the rounds they were added: each round was designed after the validation
# results of the rounds before it (see the comment on CNN_CANDIDATES in nnlab.book.experiments).
CNN_ROUNDS = {1: ("w32", "w32-fc256", "w48"), 2: ("w32-elastic", "w48-elastic"), 3: ("w32-shift", "w48-shift")}
AUGMENTATION_WORDS = {"none": "none", "shift": "whole-pixel shifts", "affine": "affine (shift, rotation, scale)",
                      "elastic": "affine + smooth 4×4 displacement field"}


def candidate_label(name: str, variant: str) -> str:
    """A candidate in a few words: ``48 filters, shifts`` (``+ hidden 256`` for a hidden head layer)."""
    exp = E.get(name)
    v = exp.variant(variant)
    short = {"none": "no distortions", "shift": "shifts", "affine": "affine", "elastic": "affine + field"}
    head = " + hidden 256" if sum(layer.startswith("linear") for layer in v.spec) > 1 else ""
    return f"{first_width(v.spec)} filters{head}, {short[exp.train_config(v).augment]}"


def candidate_rounds(name: str = "cnn") -> pd.DataFrame:
    """Every candidate of the CNN, by round, in readers' words: filters of the first block, the
    head, the distortions of the training images, parameters, validation accuracy (%, mean ±
    std over seeds: this decides), the choice, and test accuracy (%, shown after the choice)."""
    exp = E.get(name)
    by_name = {r["candidate"]: r for r in candidate_rows(name)}
    listed = [v for vs in CNN_ROUNDS.values() for v in vs]
    missing = sorted({v.name for v in exp.variants} - set(listed))
    if missing:
        raise ValueError(f"candidates {missing} of {name!r} are in no round of CNN_ROUNDS; add them")
    rows = []
    for rnd, names in CNN_ROUNDS.items():
        for n in names:
            v, r = exp.variant(n), by_name[n]
            hidden = sum(layer.startswith("linear") for layer in v.spec) > 1
            rows.append({"round": rnd, "filters in the first block": first_width(v.spec),
                         "head": "hidden layer of 256" if hidden else "one linear layer",
                         "training images distorted by": AUGMENTATION_WORDS[exp.train_config(v).augment],
                         "parameters": f"{r['parameters']:,}",
                         "validation accuracy (%)": r["validation accuracy (%)"], "chosen": r["chosen"],
                         "test accuracy (%)": r["test accuracy (%)"]})
    return pd.DataFrame(rows)


def final_train_acc(name: str, variant: str) -> float:
    """Mean over seeds of the last epoch's training accuracy (on that epoch's distorted images,
    with dropout active)."""
    return statistics.fmean(r["history"]["train_acc"][-1] for r in store.runs(name, variant))


def plot_candidates(name: str = "cnn"):
    """Misclassified validation and test images of every candidate: one dot per seed, a bar
    at the mean; the candidate chosen on validation in colour."""
    import matplotlib.pyplot as plt

    exp = E.get(name)
    chosen = store.chosen_variant(name)
    sizes = {"val_acc": exp.config()["data"]["val_size"], "test_acc": len(mnist("test")[1])}
    fig, axes = plt.subplots(1, 2, figsize=(plots.TEXT_WIDTH, 0.42 * len(exp.variants) + 1.2), sharey=True,
                             layout="constrained")
    for ax, (metric, n) in zip(axes, sizes.items()):
        for i, v in enumerate(exp.variants):
            errors = [(1 - r[metric]) * n for r in store.runs(name, v.name)]
            colour = plots.PALETTE[0] if v.name == chosen else "0.45"
            ax.plot(errors, [i] * len(errors), "o", color=colour, alpha=0.75, markersize=6)
            ax.plot([statistics.fmean(errors)] * 2, [i - 0.3, i + 0.3], "-", color=colour, linewidth=2.5)
        split = "validation" if metric == "val_acc" else "test"
        ax.set_xlabel(f"misclassified {split} images\n(of {n:,})")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(range(len(exp.variants)), [candidate_label(name, v.name) for v in exp.variants])
    axes[0].invert_yaxis()
    return fig


STUDY = "cnn-validation-study"
STUDY_REFERENCE = "w8-p0.1-lr1e-3"


def study_table() -> pd.DataFrame:
    """Per configuration: validation accuracy after epoch 1 and after epoch 10 (mean over seeds)."""
    rows = []
    for v in E.get(STUDY).variants:
        rs = store.runs(STUDY, v.name)
        rows.append({"configuration": v.name, "l2": 0.0, **{k: val for k, val in v.info},
                     "epoch1": statistics.fmean(r["history"]["val_acc"][0] for r in rs),
                     "epoch10": statistics.fmean(r["history"]["val_acc"][-1] for r in rs),
                     "test (epoch 10)": statistics.fmean(r["test_acc"] for r in rs)})
    df = pd.DataFrame(rows).set_index("configuration")
    df["rank after 1"] = df.epoch1.rank(ascending=False).astype(int)
    df["rank after 10"] = df.epoch10.rank(ascending=False).astype(int)
    return df


def study_settings(configuration: str) -> str:
    """A configuration of the ten-epoch study in words: ``dropout 0.1, learning rate 0.001, batch norm``."""
    info = dict(E.get(STUDY).variant(configuration).info)
    return (f"dropout {info['dropout']:g}, learning rate {info['lr']:g}, "
            + ("batch norm" if info["batchnorm"] else "no batch norm")
            + (f", L2 λ = {info['l2']:g}" if info.get("l2") else ", no L2"))


def study_report(study: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`study_table` in readers' words: the settings of each configuration, its
    validation accuracy (%) after one and after ten epochs with the rankings these give, and
    its test accuracy after ten epochs."""
    df = study_table() if study is None else study
    return pd.DataFrame({
        "dropout p": [f"{p:g}" for p in df["dropout"]], "learning rate": [f"{lr:g}" for lr in df["lr"]],
        "batch norm": ["yes" if b else "no" for b in df["batchnorm"]],
        "L2 λ": [f"{w:g}" if w else "0" for w in df["l2"]],
        "validation accuracy after 1 epoch (%)": [pct(v) for v in df["epoch1"]],
        "rank after 1 epoch": df["rank after 1"].to_numpy(),
        "validation accuracy after 10 epochs (%)": [pct(v) for v in df["epoch10"]],
        "rank after 10 epochs": df["rank after 10"].to_numpy(),
        "test accuracy after 10 epochs (%)": [pct(v) for v in df["test (epoch 10)"]]})


def study_rank_interval(trials: int = 4000, seed: int = 0) -> dict:
    """How firmly the study pins down the rank correlation between one-epoch and ten-epoch
    validation accuracy.

    The study has one seed per configuration, so the interval resamples configurations:
    ``low``/``high`` is a 95% percentile bootstrap interval for Spearman's correlation over
    configurations drawn with replacement (:func:`nnlab.stats.rank_correlation_interval`;
    draws with a constant column have no correlation and are left out).
    ``seed_sd_images`` is the seed-to-seed standard deviation of ten-epoch validation errors
    of the study's small CNNs, pooled over the configurations of :data:`REGULARISERS` (three
    seeds each: the square root of the mean of their variances), and ``within_gap`` counts
    the configurations whose ten-epoch validation errors lie within twice that of the best.
    """
    df = study_table()
    first, last = df.epoch1.to_numpy(), df.epoch10.to_numpy()
    interval = stats.rank_correlation_interval(first, last, resamples=trials, seed=seed)
    n_val = E.get(STUDY).config()["data"]["val_size"]
    sd_images = seed_sd(REGULARISERS) * n_val
    errors = (1 - last) * n_val
    return {"rho": interval.estimate, "low": interval.low, "high": interval.high, "configurations": len(df),
            "seed_sd_images": sd_images, "image_gap": 2 * sd_images,
            "within_gap": int((errors <= errors.min() + 2 * sd_images).sum())}


def seed_sd(name: str, epoch: int | None = None) -> float:
    """Seed-to-seed standard deviation of validation accuracy in experiment ``name``, pooled
    over its variants: the square root of the mean of the per-variant variances (ddof=1).
    With ``epoch``, of the accuracy each run's history stores after that epoch (1-based)."""
    def acc(r: dict) -> float:
        return r["val_acc"] if epoch is None else r["history"]["val_acc"][epoch - 1]

    variances = [np.var([acc(r) for r in store.runs(name, v.name)], ddof=1) for v in E.get(name).variants]
    return float(np.sqrt(np.mean(variances)))


def learning_rate_gaps() -> dict[int, dict[str, float]]:
    """The study's smallest learning rate minus its largest, in validation images, after one
    and after ten epochs (keys 1 and 10), with ``sd``: the seed-to-seed standard deviation of
    validation errors at that epoch, pooled over :data:`REGULARISERS` (constant learning rate,
    so its runs after epoch 1 are one-epoch runs), and ``ratio``: the gap over the standard
    deviation of a difference of two single runs, ``sqrt(2) sd``."""
    study = study_table()
    n_val = E.get(STUDY).config()["data"]["val_size"]
    out = {}
    for epoch in (1, 10):
        gap = (study.loc["w8-p0.1-lr3e-4", f"epoch{epoch}"] - study.loc["w8-p0.1-lr1e-2", f"epoch{epoch}"]) * n_val
        sd = seed_sd(REGULARISERS, epoch) * n_val
        out[epoch] = {"gap": float(gap), "sd": sd, "ratio": float(abs(gap) / (np.sqrt(2) * sd))}
    return out


def study_best(column: str) -> str:
    return str(study_table()[column].idxmax())


REGULARISERS = "cnn-regularisers"
# One change each from the reference configuration: (variant, the change in words).
STUDY_CHANGES = {"no_bn": ("no-batch-norm", "batch norm removed"),
                 "no_dropout": ("no-dropout", "dropout removed (p = 0.1 → 0)"),
                 "l2": ("l2=5e-4", "L2 regularisation added (λ = 5·10⁻⁴)")}


EARLY_EPOCHS = 3  # the regularisers' effects are also read off after this many epochs


# How the verdicts call each configuration of :data:`REGULARISERS`.
STUDY_WORDS = {"reference": "the reference", "no_bn": "the CNN without batch norm",
               "no_dropout": "the CNN without dropout", "l2": "the CNN with L2"}


def _study_accuracy(epoch: int | None) -> dict[str, dict[int, float]]:
    """Validation accuracy per seed of every variant of :data:`REGULARISERS`, after ``epoch``."""
    def val(r: dict) -> float:
        return r["val_acc"] if epoch is None else r["history"]["val_acc"][epoch - 1]

    return {v.name: {r["seed"]: val(r) for r in store.runs(REGULARISERS, v.name)}
            for v in E.get(REGULARISERS).variants}


def study_effects(epoch: int | None = None) -> dict:
    """Per one-change variant of :data:`REGULARISERS` (:data:`STUDY_CHANGES`): its validation
    accuracy minus the reference's on the same seed, as ``mean``, ``std`` over seeds, the
    standard error ``se``, and ``better``/``worse``: on how many seeds the change helped or
    hurt; and the paired test against the reference (:func:`nnlab.stats.compare`): ``p``,
    ``detected``, ``verdict``, ``report``. ``epoch``: after that epoch of the runs (their
    learning rate is constant, so epoch *k* of a run is a complete *k*-epoch run); the last
    epoch by default."""
    acc = _study_accuracy(epoch)
    ref = acc["reference"]
    out = {}
    for key, (variant, _) in STUDY_CHANGES.items():
        d = np.array([acc[variant][s] - ref[s] for s in sorted(ref)])
        mean, std = float(d.mean()), float(d.std(ddof=1))
        test = stats.compare(acc[variant], ref, names=(STUDY_WORDS[key], STUDY_WORDS["reference"]))
        out[key] = {"mean": mean, "std": std, "se": std / len(d) ** 0.5, "better": int((d > 0).sum()),
                    "worse": int((d < 0).sum()), "seeds": len(d), "p": test.p, "detected": test.detected,
                    "verdict": test.verdict(), "report": test.report()}
    return out


def study_effect_pairs(epoch: int | None = None) -> dict[tuple[str, str], stats.Comparison]:
    """The one-change variants of :data:`REGULARISERS` against each other, paired by seed:
    whether one change costs more than another (keys are pairs of :data:`STUDY_CHANGES` keys)."""
    from itertools import combinations

    acc = _study_accuracy(epoch)
    return {(a, b): stats.compare(acc[STUDY_CHANGES[a][0]], acc[STUDY_CHANGES[b][0]],
                                  names=(STUDY_WORDS[a], STUDY_WORDS[b]))
            for a, b in combinations(STUDY_CHANGES, 2)}


def study_tests_summary(early: dict | None = None, late: dict | None = None, alpha: float = 0.05) -> dict:
    """How many of the effects table's tests find a difference, and how often that many tests
    of changes without any effect would find at least one: ``tests``, ``detected``,
    ``false_alarm`` (``1 - (1 - alpha) ** tests``, the tests taken as independent)."""
    early = study_effects(EARLY_EPOCHS) if early is None else early
    late = study_effects() if late is None else late
    results = [*early.values(), *late.values()]
    return {"tests": len(results), "detected": sum(e["detected"] for e in results),
            "false_alarm": 1 - (1 - alpha) ** len(results)}


def study_effects_report(early: dict | None = None, late: dict | None = None) -> pd.DataFrame:
    """:func:`study_effects` in readers' words, after :data:`EARLY_EPOCHS` epochs and after
    the last: per change, the mean ± std over seeds of the paired difference in validation
    accuracy (points) with the paired test's p-value, marked † where the test detects a
    difference (p < 0.05), and seeds better/worse."""
    early = study_effects(EARLY_EPOCHS) if early is None else early
    late = study_effects() if late is None else late
    epochs = E.get(REGULARISERS).train.epochs
    rows = []
    for key, (_, words) in STUDY_CHANGES.items():
        row = {"change from the reference": words}
        for n, eff in ((EARLY_EPOCHS, early), (epochs, late)):
            e = eff[key]
            mark = " †" if e["detected"] else ""
            row[f"after {n} epochs (points)"] = (f"{100 * e['mean']:+.2f} ± {100 * e['std']:.2f} "
                                                 f"({stats.format_p(e['p'])}){mark}")
            row[f"after {n}: seeds better / worse"] = f"{e['better']} / {e['worse']}"
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Dropout in front of batch norm: what the running statistics learn
# --------------------------------------------------------------------------------------


def sweep_val_loss(p: float) -> float:
    """Validation loss (nats per image) of the dropout sweep's run at probability ``p``."""
    exp = E.get("dropout-sweep")
    return next(r["val_loss"] for r in store.runs("dropout-sweep")
                if abs(dict(exp.variant(r["variant"]).info)["p"] - p) < 1e-6)


def dropout_variance_shift(p: float, samples: int = 100_000, inputs: int = 64, seed: int = 0) -> dict:
    """How much inverted dropout inflates the variance of its output in training, for the
    output of a ReLU fed standard normal pre-activations, ``x = max(0, z)``.

    Per term, ``Var_train / Var_eval = (E[x^2] / (1 - p) - E[x]^2) / Var(x)``
    (Li et al., 2019): ``formula``, from ``E[x] = 1/sqrt(2 pi)`` and
    ``E[x^2] = 1/2``. ``simulated`` measures the same ratio in torch for a weighted sum of
    ``inputs`` such terms with independent masks and standard normal weights, as a
    convolution forms it; ``naive`` is ``1 / (1 - p)``, the ratio for inputs of mean zero;
    ``inputs`` is echoed.
    """
    mean, second = 1 / np.sqrt(2 * np.pi), 0.5
    formula = (second / (1 - p) - mean**2) / (second - mean**2)
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(samples, inputs, generator=g))
    keep = (torch.rand(samples, inputs, generator=g) >= p).float() / (1 - p)
    w = torch.randn(inputs, generator=g)
    simulated = float((x * keep @ w).var() / (x @ w).var())
    return {"p": p, "formula": float(formula), "simulated": simulated, "naive": 1 / (1 - p), "inputs": inputs}


def bn_statistics_table() -> pd.DataFrame:
    """One row per (p, seed) of :data:`nnlab.book.bn_statistics.BN_STATS`, read from the stored
    analysis :data:`nnlab.book.bn_statistics.ANALYSIS` (computed by
    :func:`nnlab.book.bn_statistics.bn_statistics_rows`, whose docstring names the columns)."""
    rows = analyses.load(bn_statistics.ANALYSIS)["rows"]
    return pd.DataFrame(rows).sort_values(["p", "seed"]).reset_index(drop=True)


def bn_statistics_report(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`bn_statistics_table` in readers' words: per p, mean ± std over seeds."""
    t = bn_statistics_table() if table is None else table
    rows = []
    def pm(values: pd.Series, scale: float = 100.0, fmt: str = ".2f") -> str:
        v = values.to_numpy() * scale
        return f"{v.mean():{fmt}} ± {v.std(ddof=1):{fmt}}" if len(v) > 1 else f"{v.mean():{fmt}}"

    for p, g in t.groupby("p"):
        rows.append({"dropout p": f"{round(9 * p):d}/9" if 0 < p < 1 else f"{p:g}",
                     "training accuracy, dropout on (%)": pm(g.train_acc),
                     "running / actual variance": pm(g.variance_ratio, 1.0, ".3g"),
                     "validation accuracy, statistics from training (%)": pm(g.val_acc),
                     "validation loss (nats)": pm(g.val_loss, 1.0, ".3g"),
                     "validation accuracy, statistics re-estimated (%)": pm(g.fixed_val_acc),
                     "validation loss re-estimated (nats)": pm(g.fixed_val_loss, 1.0, ".3g")})
    return pd.DataFrame(rows)


# Where the batch-norm runs came from (the stored runs' own fields)
# --------------------------------------------------------------------------------------

ENVIRONMENT_FIELDS = (("device", "device"), ("gpu", "GPU"), ("torch", "torch version"), ("python", "Python version"),
                      ("memory_format", "memory format"), ("cpu_capability", "CPU instruction set"),
                      ("source_hash", "code hash"))
SAME_RUN_FIELDS = ("val_acc", "val_loss", "test_acc", "test_loss")


def p_words(p: float) -> str:
    """A dropout probability of the sweep in readers' words: ``0``, ``4/9``, ``1``."""
    return f"{round(9 * p):d}/9" if 0 < p < 1 else f"{p:g}"


def _runs_by_p(name: str) -> dict[float, list[dict]]:
    exp, out = E.get(name), {}
    for r in store.runs(name):
        out.setdefault(round(float(dict(exp.variant(r["variant"]).info)["p"]), 6), []).append(r)
    return out


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def sweep_versions() -> str:
    """Which nnlab version trained which points of the dropout sweep, in words:
    ``p = 0 to 8/9 with nnlab 0.1.0, p = 1 with nnlab 0.2.0`` (consecutive points grouped)."""
    runs = _runs_by_p("dropout-sweep")
    ps = sorted(runs)
    groups: list[tuple[str, list[float]]] = []
    for p in ps:
        version = runs[p][0]["nnlab_version"]
        if groups and groups[-1][0] == version:
            groups[-1][1].append(p)
        else:
            groups.append((version, [p]))
    parts = []
    for version, members in groups:
        span = p_words(members[0]) if len(members) == 1 else f"{p_words(members[0])} to {p_words(members[-1])}"
        parts.append(f"p = {span} with nnlab {version}")
    return _join(parts)


def bn_provenance() -> dict:
    """How the batch-norm runs' seed 0 relates to the dropout sweep, and how the other seeds'
    environment differs from seed 0's, from the stored runs' fields.

    ``same``: the probabilities whose seed-0 run (trained again) has exactly the sweep's validation and test
    accuracy and loss; ``retrained``: the others; ``sweep_version`` / ``seed0_version``: the
    nnlab versions that trained the sweep's runs at ``retrained`` and the seed-0 runs;
    ``differences``: the :data:`ENVIRONMENT_FIELDS` in which the other seeds' runs differ from
    seed 0's, in words (with the values, except for code hashes).
    """
    sweep, bn = _runs_by_p("dropout-sweep"), _runs_by_p(BN_STATS)
    same, retrained = [], []
    for p, rows in sorted(bn.items()):
        seed0 = next(r for r in rows if r["seed"] == 0)
        ref = sweep[p][0]
        (same if all(seed0[k] == ref[k] for k in SAME_RUN_FIELDS) else retrained).append(p)
    rows = [r for rs in bn.values() for r in rs]
    zero = [r for r in rows if r["seed"] == 0]
    other = [r for r in rows if r["seed"] != 0]
    differences = []
    for field, words in ENVIRONMENT_FIELDS:
        a = sorted({str(r.get(field, "not recorded")) for r in zero})
        b = sorted({str(r.get(field, "not recorded")) for r in other})
        if a != b:
            values = "/".join(b) if a == ["not recorded"] else f"{'/'.join(a)} against {'/'.join(b)}"
            differences.append(words if field == "source_hash" else f"{words} ({values})")
    return {"same": [p_words(p) for p in same], "retrained": [p_words(p) for p in retrained],
            "sweep_version": ", ".join(sorted({sweep[p][0]["nnlab_version"] for p in retrained})),
            "seed0_version": ", ".join(sorted({r["nnlab_version"] for r in zero})),
            "differences": _join(differences)}


def bn_correction_test(p: float) -> stats.Comparison:
    """Paired t-test over the batch-norm runs' seeds at dropout ``p``: validation accuracy with
    re-estimated statistics against with the statistics learned in training."""
    t = bn_statistics_table()
    rows = t[np.isclose(t["p"], p)]
    return stats.compare(dict(zip(rows.seed, rows.fixed_val_acc)), dict(zip(rows.seed, rows.val_acc)),
                         names=("re-estimated statistics", "statistics from training"), paired=True)


def seed_sd_by_variant(name: str) -> dict[str, float]:
    """Seed-to-seed standard deviation (ddof=1) of validation accuracy per variant of ``name``."""
    return {v.name: float(np.std([r["val_acc"] for r in store.runs(name, v.name)], ddof=1))
            for v in E.get(name).variants}


def reference_noise_images() -> dict:
    """The regulariser study's noise in validation images: ``reference_sd`` (the reference
    configuration's own seed-to-seed standard deviation), ``pooled_sd`` (pooled over the
    configurations, as :func:`study_rank_interval` gives it) and ``version_gap`` (how far the
    validation study's run of the reference and the regulariser study's run of the same seed,
    trained by different nnlab versions, lie apart)."""
    n_val = E.get(STUDY).config()["data"]["val_size"]
    ref = regulariser_reference()
    return {"reference_sd": seed_sd_by_variant(REGULARISERS)["reference"] * n_val,
            "pooled_sd": seed_sd(REGULARISERS) * n_val,
            "version_gap": abs(ref["study"] - ref["same_seed"]) * n_val}
