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
from nnlab import plots
from nnlab import results as store
from nnlab.book.report import TARGETS, candidate_rows, fmt_pm
from nnlab.models import build, count_parameters
from nnlab.rules import hidden_layers, hidden_units

BUDGET_EXPERIMENTS = ("mlp-100", "mlp-200", "mlp-1000")
BUDGETS = (100, 200, 1000)


def budget_results() -> pd.DataFrame:
    """One row per budget: architecture, units, layers, parameters, accuracy over seeds."""
    rows = []
    for t in TARGETS[:3]:
        exp = E.get(t.experiment)
        model = build(exp.variant(store.chosen_variant(exp.name)).spec)
        s = store.summary(t.experiment)
        v = store.summary(t.experiment, "val_acc")
        rows.append({"problem": t.problem, "hidden widths": dict(exp.variant(store.chosen_variant(exp.name)).info)["widths"],
                     "hidden units": hidden_units(model), "hidden layers": hidden_layers(model),
                     "parameters": count_parameters(model), "epochs": exp.train.epochs,
                     "val accuracy": fmt_pm(v["mean"], v["std"]), "test accuracy": fmt_pm(s["mean"], s["std"]),
                     "worst seed": f"{s['min']:.4f}", "required": t.required, "student": t.student})
    return pd.DataFrame(rows).set_index("problem")


def candidate_table() -> pd.DataFrame:
    """Candidate recipes of the multi-variant budget experiments: validation decides."""
    rows = [r for name in BUDGET_EXPERIMENTS if len(E.get(name).variants) > 1
            for r in candidate_rows(name, "augmentation")]
    return pd.DataFrame(rows).drop(columns="parameters").set_index(["experiment", "augmentation"])


def histories(name: str, variant: str | None = None) -> list[dict]:
    """Per-epoch histories of a variant's runs (the chosen variant by default)."""
    return [r["history"] for r in store.runs(name, variant or store.chosen_variant(name))]


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


# ---------------------------------------------------------------------------------------
# Depth versus width


def depth_width_table(budget: int) -> pd.DataFrame:
    """Per variant: widths, depth, parameters, validation and test accuracy (mean ± std)."""
    name = f"depth-width-{budget}"
    exp = E.get(name)
    rows = []
    for v in exp.variants:
        info = dict(v.info)
        val = store.summary(name, "val_acc", v.name)
        test = store.summary(name, "test_acc", v.name)
        rows.append({"variant": v.name, "widths": info["widths"], "depth": info["depth"],
                     "parameters": count_parameters(build(v.spec)), "val_mean": val["mean"],
                     "val_std": val["std"], "test_mean": test["mean"], "test_std": test["std"]})
    return pd.DataFrame(rows).set_index("variant")


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
    """Validation and test accuracy against depth, one panel per budget, equal vs tapering."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=False)
    for ax, b in zip(axes, BUDGETS):
        df = depth_width_table(b)
        for k, (shape, marker) in enumerate((("equal", "o"), ("taper", "s"))):
            sub = df[[i.startswith(shape) or (shape == "taper" and d == 1)
                      for i, d in zip(df.index, df.depth)]].sort_values("depth")
            for metric, colour, offset in (("val", plots.PALETTE[0 + 2 * k], -0.06), ("test", plots.PALETTE[1 + 2 * k], 0.06)):
                ax.errorbar(sub.depth + offset + 0.03 * k, sub[f"{metric}_mean"] * 100, yerr=sub[f"{metric}_std"] * 100,
                            marker=marker, color=colour, capsize=3, label=f"{shape}, {metric}")
        ax.set_title(f"budget {b} hidden units")
        ax.set_xlabel("hidden layers")
        ax.set_xticks([1, 2, 3, 4])
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=8, loc="lower left")
    return fig


def ablation_table() -> pd.DataFrame:
    """The 100-unit ablation: one change at a time from the problem set's recipe."""
    name = "mlp-ablation"
    rows = []
    for v in E.get(name).variants:
        test = store.summary(name, "test_acc", v.name)
        val = store.summary(name, "val_acc", v.name)
        rows.append({"recipe": dict(v.info)["label"], "val accuracy": fmt_pm(val["mean"], val["std"]),
                     "test accuracy": fmt_pm(test["mean"], test["std"]), "test_mean": test["mean"]})
    return pd.DataFrame(rows).set_index("recipe")


def rank_agreement(budget: int) -> float:
    """Spearman correlation between validation and test accuracy across a sweep's variants."""
    df = depth_width_table(budget)
    a = df["val_mean"].rank().to_numpy()
    b = df["test_mean"].rank().to_numpy()
    return float(np.corrcoef(a, b)[0, 1])
