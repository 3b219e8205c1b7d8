"""This book's experiment catalogue: every network the book trains, registered on import.

The repository's ``pyproject.toml`` names this module in ``[tool.nnlab] experiments``, so
``nnlab train``, ``nnlab list`` and the chapters find the book's experiments; a course that
installs ``nnlab`` never sees them unless it names this module too. The rules and the data
description of every experiment are those the committed results were trained with: their
hashes must not change without retraining.
"""

from __future__ import annotations

from dataclasses import replace

from nnlab import rules as R
from nnlab.book import problems as P
from nnlab.data import MNIST
from nnlab.experiments import REGISTRY, Experiment, Variant, get, names, register  # noqa: F401
from nnlab.models import mlp
from nnlab.train import TrainConfig

MLP_RECIPE = TrainConfig(epochs=40, batch_size=128, optimizer="adam", lr=3e-3, schedule="onecycle",
                         warmup=0.15, augment="shift", max_shift=2.0)


ELASTIC_RECIPE = replace(MLP_RECIPE, augment="elastic")


def _mlp_variant(name: str, widths: list[int], dropout: float = 0.0, **info) -> Variant:
    return Variant(name, tuple(mlp(widths, dropout, classes=MNIST)),
                   info=tuple({"widths": "-".join(map(str, widths)), "depth": len(widths),
                               "hidden_units": sum(widths), **info}.items()))


register(Experiment(
    name="mlp-100", chapter="book/part2/budget",
    purpose="Best MLP with at most 100 hidden units (problem 2C); random shifts or a mild elastic "
            "field (4x4 bicubic, at most 2 px at the nodes), chosen on validation.",
    variants=(_mlp_variant("shift", [100], augment="shift"),
              replace(_mlp_variant("elastic", [100], augment="elastic"), train=ELASTIC_RECIPE)),
    train=MLP_RECIPE, rules=P.MLP_100))
# Two candidate recipes each; the reported one is chosen on validation accuracy
# (nnlab.results.chosen_variant), never on the test set.
register(Experiment(
    name="mlp-200", chapter="book/part2/budget",
    purpose="Best MLP with at most 200 hidden units in at least 2 hidden layers (problem 2D); "
            "random shifts or a mild elastic field (4x4 bicubic, at most 2 px at the nodes), chosen on validation.",
    variants=(_mlp_variant("shift", [150, 50], augment="shift"),
              replace(_mlp_variant("elastic", [150, 50], augment="elastic"), train=ELASTIC_RECIPE)),
    train=MLP_RECIPE, rules=P.MLP_200))
register(Experiment(
    name="mlp-1000", chapter="book/part2/budget",
    purpose="Best MLP with at most 1000 hidden units in at least 3 hidden layers (problem 2E); "
            "random shifts or a mild elastic field (4x4 bicubic, at most 2 px at the nodes), chosen on validation.",
    variants=(_mlp_variant("shift", [700, 200, 100], dropout=0.1, augment="shift"),
              replace(_mlp_variant("elastic", [700, 200, 100], dropout=0.1, augment="elastic"),
                      train=ELASTIC_RECIPE)),
    train=replace(MLP_RECIPE, epochs=25), rules=P.MLP_1000))


PROBLEM_RECIPE = TrainConfig(epochs=10, batch_size=32, optimizer="adam", lr=1e-3)

register(Experiment(
    name="mlp-ablation", chapter="book/part2/budget",
    purpose="The 100-unit MLP with the problem set's recipe (Adam 1e-3, batch 32, 10 epochs), with a final "
            "Softmax in front of CrossEntropyLoss, and with the book's recipe change (one-cycle, peak 3e-3, "
            "batch 128, 40 epochs, changed together) without and with random shifts.",
    variants=(
        Variant("problem-recipe", tuple(mlp([100], classes=MNIST)), PROBLEM_RECIPE,
                info=(("label", "problem recipe: Adam 1e-3, batch 32, 10 epochs"),)),
        Variant("softmax-last", tuple(mlp([100], softmax_last=True, classes=MNIST)), PROBLEM_RECIPE,
                info=(("label", "problem recipe with a final Softmax layer"),)),
        Variant("onecycle", tuple(mlp([100], classes=MNIST)), replace(MLP_RECIPE, augment="none"),
                info=(("label", "one-cycle schedule, batch 128, longer training"),)),
        Variant("onecycle-shift", tuple(mlp([100], classes=MNIST)), MLP_RECIPE,
                info=(("label", "one-cycle + random shifts (the mlp-100 recipe)"),)),
    ),
    train=PROBLEM_RECIPE, rules=P.MLP_100, save_weights=False))


def _budget_shapes(budget: int) -> list[tuple[str, list[int]]]:
    """Ways to spend a hidden-unit budget over 1-4 layers: equal widths and tapering."""
    shapes = []
    for depth in (1, 2, 3, 4):
        equal = [budget // depth] * depth
        shapes.append((f"equal-{depth}", equal))
        if depth > 1:
            weights = [2 ** (depth - 1 - i) for i in range(depth)]  # halves layer by layer
            taper = [max(1, budget * w // sum(weights)) for w in weights]
            shapes.append((f"taper-{depth}", taper))
    return shapes


SWEEP_RECIPE = TrainConfig(epochs=4, batch_size=128, optimizer="adam", lr=3e-3, schedule="onecycle",
                           warmup=0.15, augment="shift", max_shift=2.0)

for _budget in (100, 200, 1000):
    register(Experiment(
        name=f"depth-width-{_budget}", chapter="book/part2/depth_width",
        purpose=f"Depth versus width under a budget of {_budget} hidden units: 1-4 hidden layers, "
                "equal and tapering widths, one shared recipe.",
        variants=tuple(_mlp_variant(n, w, shape=n.split("-")[0]) for n, w in _budget_shapes(_budget)),
        train=SWEEP_RECIPE, rules=R.Rules(f"budget of {_budget} hidden units", P.MLP_LAYERS,
                                          max_hidden_units=_budget),
        save_weights=False))


# --------------------------------------------------------------------------------------
# Part III: the MNIST CNN under 1M parameters (problem 3G)

def cnn_spec(dropout: float = 0.1, width: int = 32, batchnorm: bool = True, head: int = 0) -> tuple[str, ...]:
    """The book's CNN: three conv blocks (BN before ReLU), max pooling, dropout, a linear head.

    ``width`` filters in the first block, twice as many in the second and four times in the
    third; ``head`` > 0 puts a hidden linear layer of that many ReLU units before the output.
    Without batch norm the convolutions get their bias back (BN's shift replaces it).
    """
    c1, c2, c3 = width, 2 * width, 4 * width

    def block(c: int) -> list[str]:
        return [f"conv {c} 3 p=1 bias=0", "bn", "relu"] if batchnorm else [f"conv {c} 3 p=1", "relu"]

    return tuple(
        block(c1) + block(c1) + ["maxpool 2", f"dropout {dropout:g}"]
        + block(c2) + block(c2) + ["maxpool 2", f"dropout {dropout:g}"]
        + block(c3) + ["maxpool 2", "flatten", f"dropout {dropout:g}"]
        + ([f"linear {head}", "relu", f"dropout {dropout:g}"] if head else []) + ["linear 10"])


CNN_RECIPE = TrainConfig(epochs=10, batch_size=32, optimizer="adam", lr=2e-3, schedule="onecycle",
                         warmup=0.2, augment="affine", max_shift=2.0, label_smoothing=0.0)

# Candidates of the book's CNN: a size (``cnn_spec`` arguments) and the augmentation of the
# training images, added in rounds, each decided by the validation results of the ones
# before: three sizes under affine distortions; the mild elastic field of nnlab.augment (chosen
# on validation for every MLP of Part II) at the two widths, which lowered validation accuracy; so whole-pixel
# shifts alone at the two widths. ``results.chosen_variant("cnn")`` picks one on validation
# accuracy; CNN_CHOSEN records that choice for the experiments built on it (a test holds them
# equal).
CNN_CANDIDATES = {"w48": ({"width": 48}, "affine"), "w48-elastic": ({"width": 48}, "elastic"),
                  "w48-shift": ({"width": 48}, "shift"), "w32-fc256": ({"head": 256}, "affine"),
                  "w32": ({}, "affine"), "w32-elastic": ({}, "elastic"), "w32-shift": ({}, "shift")}
CNN_CHOSEN = "w48-shift"


def _cnn_candidate(name: str, size: dict, augmentation: str) -> Variant:
    recipe = None if augmentation == CNN_RECIPE.augment else replace(CNN_RECIPE, augment=augmentation)
    return Variant(name, cnn_spec(**size), recipe)


register(Experiment(
    name="cnn", chapter="book/part3/cnn",
    purpose="The MNIST CNN under 1M parameters, 10 epochs at batch 32, with batch norm and dropout (problem 3G); "
            "candidate sizes and augmentations, chosen on mean validation accuracy.",
    variants=tuple(_cnn_candidate(n, size, aug) for n, (size, aug) in CNN_CANDIDATES.items()),
    train=CNN_RECIPE, rules=P.CNN_1M))

_CNN_BEST = get("cnn").variant(CNN_CHOSEN)
_CNN_BEST_RECIPE = get("cnn").train_config(_CNN_BEST)

# The final model: the chosen candidate's recipe, trained again on all 60,000 training images.
# Once validation has made its choice the 5,000 validation images have no job left, so the
# last fit uses them as training data (Goodfellow et al. 2016, section 7.8); its test
# accuracy is measured once, and there is no validation accuracy to report for it.
register(Experiment(
    name="cnn-final", chapter="book/part3/cnn",
    purpose="The CNN chosen on validation (see cnn), trained again with the same recipe on the training "
            "and validation images together: the book's final model for problem 3G.",
    variants=(Variant(CNN_CHOSEN, _CNN_BEST.spec),),
    train=replace(_CNN_BEST_RECIPE, fit_on="train+val"),
    rules=P.CNN_1M))

def _dropout_variant(p: float) -> Variant:
    """The chosen CNN with every dropout layer at probability ``p`` (rounded to 6 digits)."""
    return Variant(f"p={p:.3f}", cnn_spec(dropout=round(p, 6), **CNN_CANDIDATES[CNN_CHOSEN][0]),
                   info=(("p", round(p, 6)),))


register(Experiment(
    name="dropout-sweep", chapter="book/part3/cnn",
    purpose="Ten dropout probabilities from 0 to 1 applied to the book's CNN (the candidate chosen on validation), "
            "one epoch each at batch 32.",
    variants=tuple(_dropout_variant(i / 9) for i in range(10)),
    train=replace(_CNN_BEST_RECIPE, epochs=1),
    seeds=(0,), rules=P.CNN_1M, save_weights=False,
    keep_failed=True))  # p = 1 zeroes every feature: a chance-level run, shown on purpose

# Why the sweep's largest probabilities fail at evaluation: the same one-epoch runs with their
# weights kept, so the chapter can evaluate each trained model twice, with the batch-norm
# running statistics learned under dropout and with statistics re-estimated without it.
register(Experiment(
    name="dropout-bn-statistics", chapter="book/part3/cnn",
    purpose="Three points of the dropout sweep (p = 4/9, 8/9, 1) trained again with their "
            "weights kept, to measure how dropout in front of batch norm skews its running statistics.",
    variants=tuple(_dropout_variant(p) for p in (4 / 9, 8 / 9, 1.0)),
    train=replace(_CNN_BEST_RECIPE, epochs=1),
    seeds=(0, 1, 2), rules=P.CNN_1M,
    keep_failed=True))  # p = 1 learns nothing by construction


# --------------------------------------------------------------------------------------
# Part III: pooling and invariance (problems 3D-3F)

def pooling_spec(downsample: str) -> tuple[str, ...]:
    """Two 3x3 conv layers (8 and 16 filters) and a linear head; ``downsample`` says how the
    maps shrink between them: ``max`` or ``avg`` (2x2 pools), ``stride`` (stride-2 convs) or
    ``none`` (full resolution up to the linear layer)."""
    conv_stride = "s=2 " if downsample == "stride" else ""
    pool = {"max": ["maxpool 2"], "avg": ["avgpool 2"]}.get(downsample, [])
    return (f"conv 8 3 {conv_stride}p=1", "relu", *pool, f"conv 16 3 {conv_stride}p=1", "relu", *pool,
            "flatten", "linear 10")


POOLING_RECIPE = TrainConfig(epochs=2, batch_size=128, optimizer="adam", lr=3e-3, schedule="onecycle",
                             warmup=0.2, augment="none")

register(Experiment(
    name="pooling-ablation", chapter="book/part3/pooling",
    purpose="The same two-layer CNN with 2x2 max pooling, 2x2 average pooling, stride-2 convolutions "
            "or no downsampling, trained without augmentation, to measure what pooling buys under "
            "shifts and noise (problem 3F).",
    variants=tuple(Variant(name, pooling_spec(kind), info=(("downsampling", label),))
                   for name, kind, label in (("max-pool", "max", "2x2 max pooling"),
                                             ("avg-pool", "avg", "2x2 average pooling"),
                                             ("stride-2", "stride", "stride-2 convolutions"),
                                             ("no-pool", "none", "none"))),
    train=POOLING_RECIPE, seeds=(0, 1, 2), rules=R.NONE, save_weights=True))


def _study_variant(name: str, width: int, dropout: float, lr: float, batchnorm: bool = True,
                   l2: float = 0.0, epochs: int = 10) -> Variant:
    cfg = TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", lr=lr, weight_decay=l2)
    info = (("width", width), ("dropout", dropout), ("lr", lr), ("batchnorm", int(batchnorm)))
    return Variant(name, cnn_spec(dropout, width, batchnorm), cfg,
                   info=info + ((("l2", l2),) if l2 else ()))


register(Experiment(
    name="cnn-validation-study", chapter="book/part3/cnn",
    purpose="Do one-epoch rankings of CNN configurations agree with ten-epoch rankings? Small CNNs at a "
            "constant learning rate, so epoch 1 of each run is exactly a one-epoch training run.",
    variants=(
        _study_variant("w8-p0.1-lr1e-3", 8, 0.1, 1e-3),
        _study_variant("w8-p0-lr1e-3", 8, 0.0, 1e-3),
        _study_variant("w8-p0.5-lr1e-3", 8, 0.5, 1e-3),
        _study_variant("w8-p0.1-lr3e-4", 8, 0.1, 3e-4),
        _study_variant("w8-p0.1-lr1e-2", 8, 0.1, 1e-2),
        _study_variant("w8-p0.1-lr1e-3-noBN", 8, 0.1, 1e-3, batchnorm=False),
    ),
    train=TrainConfig(epochs=10, batch_size=32, optimizer="adam", lr=1e-3), seeds=(0,),
    rules=R.Rules("3G layer types", P.CNN_LAYERS, max_parameters=1_000_000), save_weights=False))

# Problem 3G asks which regulariser helped most. The study's reference CNN with batch norm
# removed, dropout removed, or L2 added (Adam's coupled weight decay: lambda * w added to
# every gradient), one change at a time, over three seeds, for the problem's ten epochs at the
# study's constant learning rate; every run stores validation accuracy after each epoch, so
# its first epochs are also complete shorter runs.
register(Experiment(
    name="cnn-regularisers", chapter="book/part3/cnn",
    purpose="Which regulariser matters most (problem 3G)? The validation study's small reference CNN with "
            "batch norm removed, dropout removed or L2 added, ten epochs, three seeds.",
    variants=(
        _study_variant("reference", 8, 0.1, 1e-3),
        _study_variant("no-batch-norm", 8, 0.1, 1e-3, batchnorm=False),
        _study_variant("no-dropout", 8, 0.0, 1e-3),
        _study_variant("l2=5e-4", 8, 0.1, 1e-3, l2=5e-4),
    ),
    train=TrainConfig(epochs=10, batch_size=32, optimizer="adam", lr=1e-3), seeds=(0, 1, 2),
    rules=R.Rules("3G layer types", P.CNN_LAYERS, max_parameters=1_000_000), save_weights=False))


# --------------------------------------------------------------------------------------
# Part II, added after review: equal-epoch comparisons and a longer depth-versus-width sweep

# mlp-1000 trained its shift candidate for 25 epochs and its elastic candidate for 40, so
# their comparison mixed two changes. This is the shift candidate with the 40-epoch recipe,
# so the two augmentations can be compared at equal length.
register(Experiment(
    name="mlp-1000-shift-40", chapter="book/part2/budget",
    purpose="The 700-200-100 MLP of problem 2E with random shifts, trained for 40 epochs like "
            "its elastic candidate, to compare the two augmentations at equal length.",
    variants=(_mlp_variant("shift-40", [700, 200, 100], dropout=0.1, augment="shift"),),
    train=MLP_RECIPE, rules=P.MLP_1000, save_weights=False))

# The depth-width sweeps train 4 epochs; the reported models train 25-40. Deep narrow nets
# are the likeliest to be under-trained at 4, so every budget is trained again for 3x as long;
# every run stores validation accuracy after each epoch, so the chapter can read off when the
# ranking of depths stops changing.
LONG_SWEEP_RECIPE = replace(SWEEP_RECIPE, epochs=12)

for _budget in (100, 200, 1000):
    register(Experiment(
        name=f"depth-width-{_budget}-long", chapter="book/part2/depth_width",
        purpose=f"The depth-width-{_budget} sweep trained for 12 epochs instead of 4 (same shapes, "
                "one-cycle schedule stretched to the longer run), to see whether the ranking of "
                "depths changes with training length.",
        variants=tuple(_mlp_variant(n, w, shape=n.split("-")[0]) for n, w in _budget_shapes(_budget)),
        train=LONG_SWEEP_RECIPE, rules=R.Rules(f"budget of {_budget} hidden units", P.MLP_LAYERS,
                                               max_hidden_units=_budget),
        save_weights=False))
