"""Slow studies of the book's chapters, stored like training results (nnlab.analyses).

Each study below trains small models from fixed data and seeds (no stored run), and takes
tens of seconds; executing its chapter would repeat it every time. Registered as an analysis
with no experiments, it is computed once by ``nnlab train NAME``, stored in
``results/NAME/analysis.json`` and current while the source of this module and of the module
that computes it is unchanged. A chapter cell reads it with one call (``softmax_gradients()``
here, ...) and gets the same values the computation returns: numbers pass through JSON
unchanged, and arrays come back as numpy arrays of their dtype.
"""

from __future__ import annotations

import numpy as np

from nnlab import analyses

SOFTMAX_GRADIENTS = "softmax-gradients"
OR_XOR = "or-xor-relu-networks"
POOLING_CHANGE = "pooling-feature-change"
SATURATION_LR = "saturation-learning-rates"

OR_XOR_SHAPES = {"or_0": ((), "or"), "xor_0": ((), "xor"), "xor_1": ((1,), "xor"),
                 "xor_2": ((2,), "xor"), "xor_4": ((4,), "xor")}
OR_XOR_SEEDS = tuple(range(100))
POOLING_LEVELS = {"shift": [0, 1, 2, 3], "rotate": [0, 10, 20, 30], "noise": [0, 0.1, 0.2, 0.3, 0.4],
                  "dropout": [0, 0.1, 0.2, 0.3, 0.4]}
POOLING_IMAGES = 300


def _encode(value):
    """An array (or a list of arrays) as JSON data that ``_decode`` turns back into it."""
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    array = np.asarray(value)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.ravel().tolist()}


def _decode(item):
    if isinstance(item, list):
        return [_decode(v) for v in item]
    return np.asarray(item["data"], dtype=np.dtype(item["dtype"])).reshape(item["shape"])


# --- Part II, budget: gradient norms with a doubled softmax --------------------------------

def _softmax_gradients() -> dict:
    from nnlab.book import mlp_budget
    return mlp_budget.softmax_gradients()


def softmax_gradients() -> dict:
    """The stored ``nnlab.book.mlp_budget.softmax_gradients()`` (default arguments)."""
    return analyses.load(SOFTMAX_GRADIENTS)


# --- Part I, OR and XOR: ReLU networks of each shape, 100 seeds ------------------------------

def _or_xor() -> dict:
    from nnlab.book import relu_logic as rl
    return {name: {k: _encode(v) for k, v in rl.train_relu_networks(hidden, function,
                                                                       seeds=OR_XOR_SEEDS).items()}
            for name, (hidden, function) in OR_XOR_SHAPES.items()}


def or_xor_networks() -> dict[str, dict[str, np.ndarray]]:
    """The stored ``nnlab.book.relu_logic.train_relu_networks`` of every shape of
    ``OR_XOR_SHAPES`` on the seeds ``OR_XOR_SEEDS``, keyed like the chapter's ``trained``."""
    return {name: {k: _decode(v) for k, v in runs.items()} for name, runs in analyses.load(OR_XOR).items()}


# --- Part III, pooling: how much each pooling changes features under perturbations -----------

def _pooling_change() -> dict:
    from nnlab.book import pooling
    images, _ = pooling.digit_subset(POOLING_IMAGES)
    table = pooling.feature_change(images, POOLING_LEVELS)
    return {"n_images": len(images), "columns": list(table.columns),
            "rows": table.to_dict(orient="split")["data"]}


def pooling_feature_change():
    """The stored ``nnlab.book.pooling.feature_change`` table (a pandas DataFrame) of the first
    ``POOLING_IMAGES`` digits of ``nnlab.book.pooling.digit_subset`` at ``POOLING_LEVELS``; its
    ``attrs["n_images"]`` is the number of digits."""
    import pandas as pd
    data = analyses.load(POOLING_CHANGE)
    table = pd.DataFrame(data["rows"], columns=data["columns"])
    table.attrs["n_images"] = data["n_images"]
    return table


# --- Part I, saturation: iterations to a test loss of 0.1 at larger learning rates -----------

SATURATION_GRID = (0.1, 0.3, 1.0, 3.0)
SATURATION_SEEDS = tuple(range(10))
SATURATION_ITERATIONS = {"relu": 300, "sigmoid": 600}


def _saturation_learning_rates() -> list:
    from nnlab import playground as pg
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    rows = []
    for activation, iterations in SATURATION_ITERATIONS.items():
        for lr in SATURATION_GRID:
            cfg = pg.PlaygroundConfig(activation=activation, learning_rate=lr, iterations=iterations)
            runs = pg.train(cfg, data, seeds=SATURATION_SEEDS)
            rows.append([activation, lr, _encode(pg.iterations_to_loss(runs, 0.1))])
    return rows


def saturation_learning_rates() -> dict[tuple[str, float], np.ndarray]:
    """The stored iterations each seed of ``SATURATION_SEEDS`` needs to reach a test loss of
    0.1 on the noiseless circle (``nnlab.playground.iterations_to_loss``), keyed by
    ``(activation, learning rate)`` for every rate of ``SATURATION_GRID``; ReLU networks train
    300 iterations, sigmoid networks 600."""
    return {(activation, lr): _decode(item) for activation, lr, item in analyses.load(SATURATION_LR)}


def _register(name: str, compute, module: str, chapter: str, purpose: str) -> None:
    analyses.register(analyses.Analysis(name=name, purpose=purpose, chapter=chapter, experiments=(),
                                        compute=compute, code=(__name__, module)))


_register(SOFTMAX_GRADIENTS, _softmax_gradients, "nnlab.book.mlp_budget", "book/part2/budget",
          "Gradient norms of the 100-unit MLP with and without a softmax in front of the loss.")
_register(OR_XOR, _or_xor, "nnlab.book.relu_logic", "book/part1/or_xor",
          "ReLU networks of each shape trained on OR and XOR from 100 seeds.")
_register(POOLING_CHANGE, _pooling_change, "nnlab.book.pooling", "book/part3/pooling",
          "Relative feature change of each pooling under shifts, rotations, noise and dropout.")
analyses.register(analyses.Analysis(
    name=SATURATION_LR, chapter="book/part1/saturation", experiments=(), compute=_saturation_learning_rates,
    code=(__name__, "nnlab.playground.training", "nnlab.playground.network", "nnlab.playground.data",
          "nnlab.playground.studies"),
    purpose="Iterations Playground networks need to reach a test loss of 0.1 at larger learning rates."))
