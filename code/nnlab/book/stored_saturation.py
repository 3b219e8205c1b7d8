"""The saturation chapter's Playground runs, stored like training results (nnlab.analyses).

As in ``nnlab.book.stored_studies``: analyses of fixed data and seeds (no stored run),
computed once by ``nnlab train NAME`` and current while the source of this module, of
``nnlab.book.saturation`` and of the Playground engine is unchanged. The chapter's settings
live here, so that what is stored and what the chapter says it trained cannot differ.

A :class:`~nnlab.playground.training.History` is stored whole, its arrays as the base64 of
their bytes with their dtype and shape, so a stored run reads back bit for bit as the
training returned it (``to_json`` and ``from_json``).
"""

from __future__ import annotations

import base64
from dataclasses import asdict, replace

import numpy as np

from nnlab import analyses

RUNS = "saturation-runs"
CENTRING = "saturation-centring"
CONTROL = "saturation-scale-control"
LONGER = "saturation-longer-budget"

SEEDS = tuple(range(10))
ITERATIONS = 4000
RELU_ITERATIONS = 1000
SYMMETRISED_ITERATIONS = 2000
FRAMES = (0, 10, 25, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1700,
          2000, 2500, 3000, 3500, 4000)
ZERO_FRAMES = (0, 250, 500, 1000, 1500, 1750, 2000, 2250, 2500, 2750, 3000, 3250, 3500, 3750,
               4000)
# (activation, learning rate) -> iterations trained, for the centring ablation
RESCALED_BUDGETS = {("centred_sigmoid", 0.03): 1000, ("scaled_sigmoid", 0.03): 4000,
                    ("half_centred_sigmoid", 0.03): 4000, ("centred_sigmoid", 0.3): 600,
                    ("scaled_sigmoid", 0.3): 600, ("half_centred_sigmoid", 0.3): 600}
# learning rate -> iterations trained, for sigma(s) - 1/2 with downstream weights x4
CONTROL_BUDGETS = {0.03: 4000, 0.3: 600}
# the cells of the learning-rate grid (nnlab.book.stored_studies.SATURATION_GRID) where seeds
# did not reach the loss within the grid's budget, trained again for LONGER_ITERATIONS
LONGER_CELLS = (("sigmoid", 0.1), ("sigmoid", 1.0), ("sigmoid", 3.0), ("relu", 1.0), ("relu", 3.0))
LONGER_ITERATIONS = 3000
ENGINE = ("nnlab.playground.training", "nnlab.playground.network", "nnlab.playground.data",
          "nnlab.playground.studies")


def array_to_json(array: np.ndarray) -> dict:
    """An array as JSON data: dtype, shape and the base64 of its bytes (little-endian)."""
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"dtype": little.dtype.str, "shape": list(array.shape),
            "base64": base64.b64encode(little.tobytes()).decode("ascii")}


def array_from_json(item: dict) -> np.ndarray:
    """The array :func:`array_to_json` encoded (a copy that can be written to)."""
    data = base64.b64decode(item["base64"])
    return np.frombuffer(data, dtype=np.dtype(item["dtype"])).reshape(item["shape"]).copy()


def _params_to_json(params) -> list:
    return [[array_to_json(w), array_to_json(b)] for w, b in params]


def _params_from_json(items: list) -> list:
    return [(array_from_json(w), array_from_json(b)) for w, b in items]


HISTORY_ARRAYS = ("train_loss", "test_loss", "grad_norm", "delta_rms", "unit_spread")


def to_json(history) -> dict:
    """A :class:`~nnlab.playground.training.History` as JSON data."""
    return {"config": asdict(history.config), "seeds": list(history.seeds),
            **{k: array_to_json(getattr(history, k)) for k in HISTORY_ARRAYS},
            "snapshots": [[t, _params_to_json(p)] for t, p in sorted(history.snapshots.items())],
            "params": _params_to_json(history.params), "seconds": history.seconds}


def from_json(data: dict):
    """The :class:`~nnlab.playground.training.History` that :func:`to_json` encoded."""
    from nnlab import playground as pg
    config = dict(data["config"])
    config["hidden"] = tuple(config["hidden"])
    return pg.History(pg.PlaygroundConfig(**config), tuple(data["seeds"]),
                      *(array_from_json(data[k]) for k in HISTORY_ARRAYS),
                      snapshots={int(t): _params_from_json(p) for t, p in data["snapshots"]},
                      params=_params_from_json(data["params"]), seconds=float(data["seconds"]))


def configs() -> dict:
    """The chapter's configurations: the sigmoid network from Playground's random start and
    from zero, and the ReLU network."""
    from nnlab import playground as pg
    return {"random": pg.PlaygroundConfig(activation="sigmoid", init="playground", iterations=ITERATIONS),
            "zero": pg.PlaygroundConfig(activation="sigmoid", init="zero", iterations=ITERATIONS),
            "relu": pg.PlaygroundConfig(activation="relu", iterations=RELU_ITERATIONS)}


def _runs() -> dict:
    from nnlab import playground as pg
    from nnlab.book import saturation as sat
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    cfg = configs()
    runs = pg.train_many({"random": (cfg["random"], SEEDS), "zero": (cfg["zero"], [0])}, data,
                         {"random": FRAMES, "zero": ZERO_FRAMES})
    runs["relu"] = pg.train(cfg["relu"], data, seeds=SEEDS)
    # the zero start on the data mirrored through the origin (labels kept): no plateau drive
    runs["symmetrised"] = pg.train(replace(cfg["zero"], iterations=SYMMETRISED_ITERATIONS),
                                   sat.symmetrised(data), seeds=[0])
    return {name: to_json(h) for name, h in runs.items()}


def runs() -> dict:
    """The stored Playground runs of the chapter on the noiseless circle, by name:
    ``random`` (the sigmoid network from Playground's start, ``SEEDS``, snapshots at
    ``FRAMES``), ``zero`` (from zero, seed 0, snapshots at ``ZERO_FRAMES``), ``relu`` (the
    ReLU network, ``SEEDS``) and ``symmetrised`` (the zero start on
    ``nnlab.book.saturation.symmetrised`` data, ``SYMMETRISED_ITERATIONS``), each a
    ``nnlab.playground.History`` as the training returned it."""
    return {name: from_json(h) for name, h in analyses.load(RUNS).items()}


def _centring() -> list:
    from nnlab import playground as pg
    from nnlab.book import saturation as sat
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    out = sat.centring_ablation(data, SEEDS, RESCALED_BUDGETS)
    return [[activation, lr, array_to_json(out[activation, lr])] for activation, lr in RESCALED_BUDGETS]


def centring() -> dict[tuple[str, float], np.ndarray]:
    """The stored ``nnlab.book.saturation.centring_ablation`` of ``SEEDS`` and
    ``RESCALED_BUDGETS`` on the noiseless circle: iterations to a test loss of 0.1 per seed,
    ``nan`` where a run never got there, keyed by ``(activation, learning rate)``."""
    return {(activation, lr): array_from_json(item) for activation, lr, item in analyses.load(CENTRING)}


def _control() -> list:
    from nnlab import playground as pg
    from nnlab.book import saturation as sat
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    out = sat.scale_control(data, SEEDS, CONTROL_BUDGETS)
    return [[lr, array_to_json(out[lr])] for lr in CONTROL_BUDGETS]


def control() -> dict[float, np.ndarray]:
    """The stored ``nnlab.book.saturation.scale_control`` of ``SEEDS`` and ``CONTROL_BUDGETS`` on
    the noiseless circle: iterations to a test loss of 0.1 per seed, ``nan`` where a run never got
    there, keyed by learning rate."""
    return {float(lr): array_from_json(item) for lr, item in analyses.load(CONTROL)}


def _longer() -> list:
    from nnlab import playground as pg
    from nnlab.book import saturation as sat
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    rows = []
    for activation, lr in LONGER_CELLS:
        cfg = pg.PlaygroundConfig(activation=activation, learning_rate=lr, iterations=LONGER_ITERATIONS)
        rows.append([activation, lr, array_to_json(sat.reach(pg.train(cfg, data, seeds=SEEDS)))])
    return rows


def longer() -> dict[tuple[str, float], np.ndarray]:
    """The stored iterations to a test loss of 0.1 per seed of ``SEEDS`` for the grid cells
    ``LONGER_CELLS`` trained for ``LONGER_ITERATIONS``, ``nan`` where a run still never got there,
    keyed by ``(activation, learning rate)``."""
    return {(activation, float(lr)): array_from_json(item) for activation, lr, item in analyses.load(LONGER)}


for _name, _compute, _purpose in (
        (RUNS, _runs, "Sigmoid and ReLU Playground networks on the circle, from random and zero starts."),
        (CENTRING, _centring, "Iterations to a test loss of 0.1 for the rescaled and shifted sigmoids."),
        (CONTROL, _control, "Iterations to a test loss of 0.1 for sigmoid(s) - 1/2 with downstream weights x4."),
        (LONGER, _longer, "Iterations to a test loss of 0.1 at the learning rates where the grid's budget ran out.")):
    analyses.register(analyses.Analysis(name=_name, purpose=_purpose, chapter="book/part1/saturation",
                                        experiments=(), compute=_compute,
                                        code=(__name__, "nnlab.book.saturation", *ENGINE)))
