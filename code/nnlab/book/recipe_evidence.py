"""Which training settings of Parts II and III were chosen on validation, and which were not.

A chapter that says "chosen on validation" must show the comparison. This module lists every
setting of the budget MLPs (:func:`mlp_settings`) and of the CNN (:func:`cnn_settings`) with
how it was chosen: compared on the validation split (with the paired test's verdict over the
stored seeds), fixed when the experiment catalogue was written and never compared with
another value, or required by the problem. It also words how the book's recipe differs from
the student's (:func:`student_contrast`). Everything reads the results store; nothing trains.
"""

from __future__ import annotations

import pandas as pd

from nnlab import experiments as E
from nnlab import results as store
from nnlab import stats
from nnlab.book import experiments as catalogue
from nnlab.book.mlp_budget import (
    BUDGET_EXPERIMENTS,
    EQUAL_EPOCHS,
    augmentation_tests,
    compare_runs,
    student_schedule,
)
from nnlab.book.report import fmt_pm

FIXED = "fixed when the experiment catalogue was written; no stored run compares it alone"
TOGETHER = "schedule, peak rate, batch and epochs together"


def _chosen(name: str):
    exp = E.get(name)
    return exp.variant(store.chosen_variant(name))


def versions(*pairs: tuple[str, str]) -> list[str]:
    """The nnlab versions that trained the stored runs of each ``(experiment, variant)``, in order."""
    return [", ".join(sorted({r["nnlab_version"] for r in store.runs(*pair)})) for pair in pairs]


def recipe_test() -> stats.Comparison:
    """The book's MLP recipe change as a whole (one-cycle schedule, peak rate, batch, epochs)
    against the problem's recipe, on validation, for the 100-unit network without augmentation."""
    return compare_runs(("mlp-ablation", "onecycle"), ("mlp-ablation", "problem-recipe"),
                        names=("the book's schedule, rate, batch and epochs", "the problem's recipe"))


def epochs_test() -> stats.Comparison:
    """The 1000-unit network with random shifts at 40 against 25 epochs, on validation."""
    return compare_runs(EQUAL_EPOCHS["mlp-1000"], ("mlp-1000", "shift"), names=("40 epochs", "25 epochs"))


def augmentation_note() -> str:
    """Per budget, the augmentation comparison's verdict, short; for the 1000-unit network,
    whose candidates trained for different lengths, the choice (the difference of the
    candidates' means) and then the later equal-length check."""
    from nnlab.book.mlp_budget import equal_epoch_comparison

    parts = []
    for b, c in augmentation_tests().items():
        if b == 1000:
            gap = 100 * equal_epoch_comparison()["val_gap_25"]
            parts.append(f"{b} units: chosen on the candidates' means, elastic minus shift {gap:+.2f} points "
                         f"(shifts at 25 epochs, elastic at 40); later equal-length check at 40 epochs: {c.report()}")
        else:
            parts.append(f"{b} units: {c.report()}")
    return "; ".join(parts)


def _widths_in_sweeps() -> str:
    """Which reported widths the depth-versus-width sweeps also train, in words."""
    from nnlab.book.mlp_budget import BUDGETS, depth_width_table, legal_sweep_best

    absent = [b for b in BUDGETS if legal_sweep_best(b)["reported"]
              not in set(depth_width_table(b)["widths"]) | set(depth_width_table(b, "-long")["widths"])]
    if not absent:
        return "every reported split is one of theirs"
    return f"the reported splits at {' and '.join(map(str, absent))} units are none of theirs"


def mlp_settings() -> pd.DataFrame:
    """Every training setting of the three reported MLPs with its value and how it was chosen
    (``setting``, ``value``, ``how it was chosen``), the comparisons worded by their paired tests."""
    recipe = catalogue.MLP_RECIPE
    widths = " / ".join(dict(_chosen(n).info)["widths"] for n in BUDGET_EXPERIMENTS)
    epochs = sorted({E.get(n).train_config(v).epochs for n in BUDGET_EXPERIMENTS for v in E.get(n).variants})
    dropout = {n: [s for s in _chosen(n).spec if s.startswith("dropout")] for n in BUDGET_EXPERIMENTS}
    drop_words = "; ".join(f"{n}: {d[0].split()[1]}" for n, d in dropout.items() if d) or "none"
    ep = epochs_test()
    new, old = versions(EQUAL_EPOCHS["mlp-1000"], ("mlp-1000", "shift"))
    whole = recipe_test()
    rows = [
        ("optimiser", "Adam", "the problem suggests Adam or RMSprop; " + FIXED),
        ("schedule and peak learning rate", f"one-cycle, peak {recipe.lr:g}", FIXED),
        ("warm-up", f"{recipe.warmup:g} of the steps", FIXED),
        ("batch", str(recipe.batch_size), FIXED),
        ("epochs", " or ".join(map(str, epochs)),
         f"fixed in advance; one later comparison, the 1000-unit network with shifts on validation: {ep.report()}; "
         f"the 40-epoch runs were trained by nnlab {new}, the 25-epoch ones by {old}"),
        (TOGETHER, "against Adam 1e-3, batch 32, 10 epochs, constant rate",
         f"compared on validation at 100 units, without augmentation: {whole.report()}"),
        ("augmentation", "the mild elastic field + affine, or random shifts",
         f"compared on validation, the higher mean reported: {augmentation_note()}"),
        ("hidden widths", widths, "fixed in advance; the depth-versus-width sweeps measure other splits, "
                                  f"at 4 and 12 epochs; {_widths_in_sweeps()}"),
        ("dropout", drop_words, FIXED),
    ]
    return pd.DataFrame(rows, columns=["setting", "value", "how it was chosen"])


def cnn_settings() -> pd.DataFrame:
    """Every setting of the reported CNN with its value and how it was chosen."""
    from nnlab.book import cnn_report

    exp = E.get("cnn")
    chosen = _chosen("cnn")
    cfg = exp.train_config(chosen)
    pairs = cnn_report.candidate_pairs_in_images()
    sweep = cnn_report.dropout_sweep_table()
    best_p = float(sweep.val_acc.idxmax())
    dropout = sorted({s.split()[1] for s in chosen.spec if s.startswith("dropout")})
    rows = [
        ("batch and epochs", f"{cfg.batch_size}, {cfg.epochs}", "required by the problem"),
        ("optimiser, schedule, peak learning rate", f"Adam, one-cycle, peak {cfg.lr:g}",
         FIXED + " (the validation study compares constant rates on a small CNN, not this schedule)"),
        ("warm-up", f"{cfg.warmup:g} of the steps", FIXED),
        ("layout: depth, 3×3 kernels, batch norm before each ReLU, max pooling, dropout between blocks",
         "three blocks", "follows the problem's hints; " + FIXED
         + " (the regulariser study removes batch norm or dropout from a small CNN, but moves neither)"),
        ("dropout probability", " / ".join(dropout),
         "fixed in advance; the one-epoch, one-seed dropout sweep does not test it at ten epochs "
         f"(its best p on validation is {best_p:g})"),
        ("width of the first block", str(cnn_report.first_width(chosen.spec)),
         f"compared on validation (48 against 32 filters: {pairs['width48']['report']})"),
        ("head", "one linear layer",
         f"compared on validation (a hidden layer of 256 against none: {pairs['head256']['report']})"),
        ("augmentation", cnn_report.AUGMENTATION_WORDS.get(cfg.augment, cfg.augment),
         f"compared on validation (shifts against affine distortions at 48 filters: {pairs['shift_w48']['report']})"),
    ]
    return pd.DataFrame(rows, columns=["setting", "value", "how it was chosen"])


def student_contrast() -> dict:
    """How the book's reported MLP recipe differs from the student's runs, for a caption:
    the MLPs' ``augmentations`` and ``epochs`` (words), ``schedule``, ``batch``; the student's
    ``student_epochs``, the epoch after which their rate dropped (``student_step``) and the
    problem's default batch they trained with (``student_batch``); and the
    problem recipe's test accuracy at 100 units (``problem_pm``, mean ± std in %)."""
    cfgs = [E.get(n).train_config(_chosen(n)) for n in BUDGET_EXPERIMENTS]
    sched = student_schedule()["2C"]
    problem = store.summary("mlp-ablation", "test_acc", "problem-recipe")
    augment = sorted({c.augment for c in cfgs})
    words = {"elastic": "the mild elastic field + affine", "shift": "random shifts"}
    return {"augmentations": " or ".join(words.get(a, a) for a in augment),
            "epochs": " or ".join(str(e) for e in sorted({c.epochs for c in cfgs})),
            "batch": " or ".join(str(b) for b in sorted({c.batch_size for c in cfgs})),
            "schedule": " or ".join(sorted({c.schedule for c in cfgs})).replace("onecycle", "one-cycle"),
            "student_epochs": sched["epochs"], "student_step": sched["epoch"],
            "student_batch": catalogue.PROBLEM_RECIPE.batch_size,
            "problem_pm": fmt_pm(problem["mean"], problem["std"]), "problem_n": problem["n"]}


def cnn_settings_full() -> pd.DataFrame:
    """:func:`nnlab.book.recipe_evidence.cnn_settings` with the settings it leaves implicit
    (weight decay, label smoothing, the largest shift, batch norm's momentum and epsilon, all
    left at their defaults, no stored run comparing other values for this CNN) and, in the
    dropout row, the regulariser study's paired test of removing dropout from a small CNN."""
    import torch

    from nnlab.book import cnn_report
    from nnlab.models import build

    table = cnn_settings()
    chosen = E.get("cnn").variant(store.chosen_variant("cnn"))
    cfg = E.get("cnn").train_config(chosen)
    norms = [m for m in build(chosen.spec, (1, 28, 28)).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momentum = ", ".join(sorted({f"{m.momentum:g}" for m in norms}))
    eps = ", ".join(sorted({f"{m.eps:g}" for m in norms}))
    effect = cnn_report.study_effects()["no_dropout"]
    epochs = E.get(cnn_report.REGULARISERS).train.epochs
    row = table["setting"] == "dropout probability"
    table.loc[row, "how it was chosen"] += (f"; removing dropout from the small CNN of the regulariser study at "
                                           f"{epochs} epochs: {effect['report']}")
    default = "the library's default, fixed in advance; no stored run compares another value for this CNN"
    extra = pd.DataFrame([
        ("L2 penalty (Adam's weight_decay)", f"{cfg.weight_decay:g}",
         default + " (the regulariser study adds L2 to a small CNN)"),
        ("label smoothing", f"{cfg.label_smoothing:g}", default),
        ("largest shift of the training images (pixels)", f"{cfg.max_shift:g}", default),
        ("batch norm momentum, ε", f"{momentum}, {eps}", "PyTorch's defaults; " + default.split("; ")[1]),
    ], columns=table.columns)
    return pd.concat([table, extra], ignore_index=True)
