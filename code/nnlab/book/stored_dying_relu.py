"""The dying-ReLU chapter's slow studies, stored like training results (nnlab.analyses).

As in ``nnlab.book.stored_studies``: analyses of fixed data and seeds (no stored run),
computed once by ``nnlab train NAME`` and current while the source of this module and of the
Playground engine is unchanged. Their ``seconds`` are the training time when computed.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from nnlab import analyses
from nnlab.book.stored_studies import _decode, _encode

EXPERIMENT = "dying-relu-order"
GRID = "dying-relu-grid"
REMEDIES = "dying-relu-remedies"

SEEDS = tuple(range(40))
HIDDEN = (4, 2)
LEARNING_RATE = 0.03
EPOCHS = 10
GRID_WIDTHS = (2, 4, 8)
GRID_LEARNING_RATES = (0.03, 0.3, 1.0, 3.0)
GRID_EPOCHS = 5
LEAKY_WIDTHS = (2,)
LOGISTIC_WIDTHS = (2, 8)
ENGINE = ("nnlab.playground.studies", "nnlab.playground.training", "nnlab.playground.network",
          "nnlab.playground.data")


def _to_json(fields: dict) -> dict:
    return {k: _encode(v) if isinstance(v, np.ndarray) else v for k, v in fields.items()}


def _from_json(fields: dict) -> dict:
    return {k: _decode(v) if isinstance(v, dict) and "dtype" in v else v for k, v in fields.items()}


def _experiment() -> dict:
    from nnlab import playground as pg
    r = pg.dying_relu_experiment(seeds=SEEDS, hidden=HIDDEN, learning_rate=LEARNING_RATE, epochs=EPOCHS,
                                 checkpoint_every=100)
    return _to_json(asdict(r))


def experiment():
    """The stored ``nnlab.playground.dying_relu_experiment`` of ``SEEDS``, ``HIDDEN``,
    ``LEARNING_RATE`` and ``EPOCHS``, a checkpoint every 100 points."""
    from nnlab.playground.studies import DyingReluResult
    fields = _from_json(analyses.load(EXPERIMENT))
    for key in ("hidden", "seeds", "orders"):
        fields[key] = tuple(fields[key])
    return DyingReluResult(**fields)


def _grid() -> dict:
    from nnlab import playground as pg
    return _to_json(pg.dying_relu_grid(widths=GRID_WIDTHS, learning_rates=GRID_LEARNING_RATES, seeds=SEEDS,
                                       epochs=GRID_EPOCHS))


def grid() -> dict:
    """The stored ``nnlab.playground.dying_relu_grid`` of ``GRID_WIDTHS`` and
    ``GRID_LEARNING_RATES`` on ``SEEDS``, ``GRID_EPOCHS`` passes."""
    return _from_json(analyses.load(GRID))


def _remedies() -> dict:
    from nnlab import playground as pg
    kw = {"learning_rates": GRID_LEARNING_RATES, "seeds": SEEDS, "epochs": GRID_EPOCHS}
    return {"leaky": _to_json(pg.dying_relu_grid(widths=LEAKY_WIDTHS, activation="leaky_relu", **kw)),
            "logistic": _to_json(pg.dying_relu_grid(widths=LOGISTIC_WIDTHS, loss="logistic", **kw))}


def remedies() -> dict[str, dict]:
    """The stored ``nnlab.playground.dying_relu_grid`` rows of the remedies, on ``SEEDS`` at
    ``GRID_LEARNING_RATES`` for ``GRID_EPOCHS`` passes: ``leaky`` (leaky ReLU, widths
    ``LEAKY_WIDTHS``) and ``logistic`` (the cross-entropy loss on the output's logit, widths
    ``LOGISTIC_WIDTHS``)."""
    return {k: _from_json(v) for k, v in analyses.load(REMEDIES).items()}


for _name, _compute, _purpose in (
        (EXPERIMENT, _experiment, "Dead ReLUs and accuracy under a class-grouped and a shuffled order."),
        (GRID, _grid, "Dead ReLUs at the end of training for each width, learning rate and order."),
        (REMEDIES, _remedies, "Dead units with a leaky ReLU, and with the cross-entropy loss, by width and rate.")):
    analyses.register(analyses.Analysis(name=_name, purpose=_purpose, chapter="book/part1/dying_relu",
                                        experiments=(), compute=_compute, code=(__name__, *ENGINE)))
