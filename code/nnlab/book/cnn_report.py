"""Part III analyses of the MNIST CNN: inside the model, the dropout sweep, sound validation.

Everything here reads stored results and weights; nothing trains.
"""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import torch

from nnlab import augment, plots
from nnlab import experiments as E
from nnlab import results as store
from nnlab.book.report import candidate_rows, fmt_pm, pct
from nnlab.data import mnist, raw_split
from nnlab.models import build, count_parameters


@torch.inference_mode()
def test_predictions(name: str = "cnn", seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) labels of the stored model on the test set."""
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


def selection_gap() -> dict:
    """Pick a candidate by test accuracy versus by validation accuracy, over stored sweeps.

    For each sweep (candidates = variants, metric = mean over seeds) returns the test accuracy
    of the candidate picked on test and of the one picked on validation. The first is what a
    reader who tunes on the test set would report; the difference is optimism bought by
    selection, not by a better model.
    """
    out = {}
    for name in ("cnn", "dropout-sweep", "depth-width-100", "depth-width-200", "depth-width-1000"):
        means = variant_means(name)
        rows = [(v.name, means[v.name]["val_acc"], means[v.name]["test_acc"]) for v in E.get(name).variants]
        by_test = max(rows, key=lambda r: r[2])
        by_val = max(rows, key=lambda r: r[1])
        out[name] = {"candidates": len(rows), "picked_by_test": by_test[0], "picked_by_val": by_val[0],
                     "test_of_test_pick": by_test[2], "test_of_val_pick": by_val[2],
                     "gap": by_test[2] - by_val[2]}
    return out


def selection_gap_note() -> str:
    """Markdown sentences on :func:`selection_gap`: where picking by test would have reported more."""
    gaps = selection_gap()
    differ = [f"`{name}` by {100 * g['gap']:.2f} points (`{g['picked_by_test']}` instead of "
              f"`{g['picked_by_val']}`)" for name, g in gaps.items() if g["picked_by_test"] != g["picked_by_val"]]
    agree = [f"`{name}`" for name, g in gaps.items() if g["picked_by_test"] == g["picked_by_val"]]
    if not differ:
        return f"In every stored sweep ({', '.join(agree)}) the two picks happen to agree."
    sentence = ("Over the stored sweeps, the candidate with the best test accuracy beats the one chosen on "
                f"validation, in test accuracy, in {'; and in '.join(differ)}: the selection is the only "
                "thing that differs.")
    if agree:
        listed = agree[0] if len(agree) == 1 else f"{', '.join(agree[:-1])} and {agree[-1]}"
        sentence += f" In {listed} the two picks agree."
    return sentence


def selection_optimism(trials: int = 2000, seed: int = 0) -> dict:
    """Optimism of selecting on the set you report, measured by resampling seeds.

    For each depth-width sweep, the runs of every variant are split at random into a
    'selection' seed and 'report' seeds: picking the variant with the best test accuracy of
    the selection seed and reporting that same number overstates the variant's accuracy on
    the other seeds by the returned mean amount (in accuracy units).
    """
    rng = np.random.default_rng(seed)
    gaps = []
    for budget in (100, 200, 1000):
        name = f"depth-width-{budget}"
        table = [[r["test_acc"] for r in store.runs(name, v.name)] for v in E.get(name).variants]
        acc = np.array(table)  # variants x seeds
        for _ in range(trials):
            s = rng.integers(acc.shape[1])
            best = int(acc[:, s].argmax())
            others = np.delete(acc[best], s)
            gaps.append(acc[best, s] - others.mean())
    return {"mean": float(np.mean(gaps)), "std": float(np.std(gaps)), "n": len(gaps)}


def seed_spread(name: str = "cnn") -> dict:
    s = store.summary(name)
    return {"std": s["std"], "range": s["max"] - s["min"], "errors_min": round((1 - s["max"]) * 10000),
            "errors_max": round((1 - s["min"]) * 10000)}


def cnn_summary() -> dict:
    s = store.summary("cnn")
    v = store.summary("cnn", "val_acc")
    exp = E.get("cnn")
    chosen = store.chosen_variant("cnn")
    variant = exp.variant(chosen)
    model = build(variant.spec)
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
    sizes = _fit_sizes()
    return {"mean": s["mean"], "std": s["std"], "min": s["min"], "max": s["max"], "n": s["n"],
            "pm": fmt_pm(s["mean"], s["std"]), "errors_mean": (1 - s["mean"]) * 10000,
            "seeds": ", ".join(map(str, s["seeds"])), "images": sum(sizes.values()),
            "val_images": sizes["val"], "change_pts": 100 * statistics.fmean(paired),
            "change_se_pts": 100 * statistics.stdev(paired) / len(paired) ** 0.5 if len(paired) > 1 else float("nan"),
            "seeds_better": sum(d > 0 for d in paired), "seeds_worse": sum(d < 0 for d in paired),
            "paired": len(paired)}


def final_note(summary: dict | None = None) -> str:
    """Markdown: what the refit on the validation images changed, seed for seed, and whether
    that change stands out from the noise (more than two standard errors of the paired mean).
    ``summary`` is :func:`final_summary`'s result, if the caller has it already."""
    f = summary or final_summary()
    direction = "raised" if f["change_pts"] > 0 else "lowered" if f["change_pts"] < 0 else "left"
    verdict = ("more than two standard errors, a change the seeds agree on"
               if abs(f["change_pts"]) > 2 * f["change_se_pts"] else
               "less than two standard errors: three seeds cannot tell this change from noise")
    return (f"Fitting the extra {f['val_images']:,} images {direction} mean test accuracy by "
            f"{abs(f['change_pts']):.2f} points, seed for seed (better on {f['seeds_better']} of "
            f"{f['paired']} seeds, worse on {f['seeds_worse']}); the standard error of that paired "
            f"mean is {f['change_se_pts']:.2f} points, so the change is {verdict}.")


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
    if best == chosen:
        return f"The candidate chosen on validation, {chosen}, also has the highest mean test accuracy."
    return (f"On the test set {best} scored higher than the chosen {chosen} ({pct(test[best])}% against "
            f"{pct(test[chosen])}%, a difference of {(test[best] - test[chosen]) * 10000:.1f} test digits). The "
            f"book still reports {chosen}: switching to the test set's favourite now would be the "
            "selection on the test set whose bias is measured below.")


def first_width(spec) -> int:
    """Filters of the first convolution of a model spec."""
    return next(m.out_channels for m in build(spec) if isinstance(m, torch.nn.Conv2d))


def candidate_table(name: str = "cnn") -> pd.DataFrame:
    """The CNN's candidates (size and augmentation): validation accuracy decides; test accuracy
    is shown after the choice."""
    exp = E.get(name)
    rows = candidate_rows(name)
    for r in rows:
        r["augmentation"] = exp.train_config(exp.variant(r["candidate"])).augment
        r["seconds per epoch"] = round(_seconds_per_epoch(name, r["candidate"]))
    columns = ["candidate", "parameters", "augmentation", "validation accuracy (%)", "chosen", "test accuracy (%)",
               "seconds per epoch"]
    return pd.DataFrame(rows)[columns]


def final_train_acc(name: str, variant: str) -> float:
    """Mean over seeds of the last epoch's training accuracy (on that epoch's distorted images,
    with dropout active)."""
    return statistics.fmean(r["history"]["train_acc"][-1] for r in store.runs(name, variant))


def augmentation_table(name: str = "cnn") -> pd.DataFrame:
    """Mean validation and test accuracy (%, mean over seeds) of the candidates with a single
    linear head, by augmentation (rows, mildest first) and filters in the first block
    (columns)."""
    exp = E.get(name)
    means = variant_means(name)
    cells: dict[str, dict[str, str]] = {}
    widths = set()
    for v in exp.variants:
        if sum(layer.startswith("linear") for layer in v.spec) > 1:  # a hidden layer in the head
            continue
        aug, width = exp.train_config(v).augment, first_width(v.spec)
        widths.add(width)
        for m in ("val", "test"):
            cells.setdefault(aug, {})[(m, width)] = pct(means[v.name][f"{m}_acc"])
    order = [(m, w) for m in ("val", "test") for w in sorted(widths)]
    labels = {("val", w): f"validation, {w} filters (%)" for w in widths} | {
        ("test", w): f"test, {w} filters (%)" for w in widths}
    rows = [{"augmentation": aug, **{labels[k]: cells[aug].get(k, "") for k in order}}
            for aug in augment.KINDS if aug in cells]
    return pd.DataFrame(rows)


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
    axes[0].set_yticks(range(len(exp.variants)), [v.name for v in exp.variants])
    axes[0].invert_yaxis()
    return fig


STUDY = "cnn-validation-study"
STUDY_REFERENCE = "w8-p0.1-lr1e-3"


def study_table() -> pd.DataFrame:
    """Per configuration: validation accuracy after epoch 1 and after epoch 10 (mean over seeds)."""
    rows = []
    for v in E.get(STUDY).variants:
        rs = store.runs(STUDY, v.name)
        rows.append({"configuration": v.name, **{k: val for k, val in v.info},
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
            + ("batch norm" if info["batchnorm"] else "no batch norm"))


def study_report(study: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`study_table` in readers' words: the settings of each configuration, its
    validation accuracy (%) after one and after ten epochs with the rankings these give, and
    its test accuracy after ten epochs."""
    df = study_table() if study is None else study
    return pd.DataFrame({
        "dropout p": [f"{p:g}" for p in df["dropout"]], "learning rate": [f"{lr:g}" for lr in df["lr"]],
        "batch norm": ["yes" if b else "no" for b in df["batchnorm"]],
        "validation accuracy after 1 epoch (%)": [pct(v) for v in df["epoch1"]],
        "rank after 1 epoch": df["rank after 1"].to_numpy(),
        "validation accuracy after 10 epochs (%)": [pct(v) for v in df["epoch10"]],
        "rank after 10 epochs": df["rank after 10"].to_numpy(),
        "test accuracy after 10 epochs (%)": [pct(v) for v in df["test (epoch 10)"]]})


def study_rank_correlation() -> float:
    """Spearman correlation between the one-epoch and ten-epoch validation rankings."""
    df = study_table()
    return float(np.corrcoef(df.epoch1.rank(), df.epoch10.rank())[0, 1])


def study_best(column: str) -> str:
    return str(study_table()[column].idxmax())


def study_effects() -> dict:
    """Ten-epoch validation accuracy of one-change variants minus the reference configuration."""
    df = study_table()
    ref = df.loc[STUDY_REFERENCE, "epoch10"]
    names = {"no_bn": "w8-p0.1-lr1e-3-noBN", "no_dropout": "w8-p0-lr1e-3", "heavy_dropout": "w8-p0.5-lr1e-3",
             "lr_high": "w8-p0.1-lr1e-2", "lr_low": "w8-p0.1-lr3e-4"}
    return {k: float(df.loc[v, "epoch10"] - ref) for k, v in names.items()}
