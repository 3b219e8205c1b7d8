"""The measurements of Part I: dead units and data order, gradients, symmetric networks.

Functions that train (:func:`dying_relu_experiment`, :func:`dying_relu_grid`) use the SGD
step of ``nnlab.playground.training``; the others measure a parameter list or a history.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnlab.playground.data import generate
from nnlab.playground.network import (
    Params,
    accuracy,
    activation_derivative,
    backward,
    forward,
    init_params,
    unit_spread,
)
from nnlab.playground.training import History, sgd_step

# ---------------------------------------------------------------------------------------
# Data order and dying ReLUs
# ---------------------------------------------------------------------------------------

ORDERS = ("grouped", "shuffled")


def dead_units(params: Params, x: np.ndarray, activation: str = "relu") -> list[np.ndarray]:
    """Which hidden ReLU units are dead: pre-activation <= 0 on every one of the inputs.

    A dead unit outputs 0 and has ReLU' = 0 on all of ``x``, so no point of ``x`` sends a
    gradient to its incoming weights or bias.

    Args:
        params: the parameter list.
        x: the inputs that define "ever active" (usually the training points).
        activation: the hidden activation (the test is ``s <= 0`` whatever it is).

    Returns:
        One boolean array ``(R, units)`` per hidden layer.
    """
    pre, _ = forward(params, x, activation)
    return [(s <= 0).all(-2) for s in pre[:-1]]


@dataclass
class DyingReluResult:
    """Dead ReLUs under a class-grouped versus a shuffled order of the same points.

    Arrays have axes ``(order, seed, checkpoint[, ...])``, ``order`` as in ``orders``.

    Attributes:
        hidden: hidden widths.
        learning_rate: SGD step size.
        batch_size: points per update.
        epochs: passes over the 1000 points.
        seeds: the seeds (each seed: one initialisation, used by both orders).
        orders: ``grouped`` (all -1 points, then all +1 points, every pass) and ``shuffled``
            (one random permutation per seed, every pass).
        points_seen: ``(C,)`` training points processed at each checkpoint.
        dead_fraction: ``(O, S, C)`` share of hidden units that are dead on the training
            points.
        dead_per_layer: ``(O, S, C, H)`` dead units per hidden layer.
        constant_output: ``(O, S, C)`` whether some hidden layer is entirely dead, so that
            the network outputs one constant.
        output_bias: ``(O, S, C)`` the output unit's bias.
        train_accuracy: ``(O, S, C)`` on the 1000 training points.
        test_accuracy: ``(O, S, C)`` on 1000 fresh points of the same distribution.
        seconds: wall-clock time.
    """

    hidden: tuple[int, ...]
    learning_rate: float
    batch_size: int
    epochs: int
    seeds: tuple[int, ...]
    orders: tuple[str, ...]
    points_seen: np.ndarray
    dead_fraction: np.ndarray
    dead_per_layer: np.ndarray
    constant_output: np.ndarray
    output_bias: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    seconds: float

    def final(self, name: str) -> np.ndarray:
        """The last checkpoint of the array ``name``, shape ``(O, S)``."""
        return getattr(self, name)[:, :, -1]


def dying_relu_data(n: int = 1000, dataset: str = "circle", noise: float = 0.0,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` training points (half +1, half -1) and ``n`` test points from Playground's generator.

    Args:
        n: points per set.
        dataset: the generator.
        noise: its noise fraction.
        seed: seeds both sets.

    Returns:
        ``(x_train, y_train, x_test, y_test)``.
    """
    x, y = generate(dataset, n, noise, np.random.default_rng((seed, 2)))
    xt, yt = generate(dataset, n, noise, np.random.default_rng((seed, 3)))
    return x, y, xt, yt


def dying_relu_experiment(seeds: Sequence[int] = tuple(range(20)), hidden: Sequence[int] = (8, 8),
                          learning_rate: float = 0.03, batch_size: int = 10, epochs: int = 10,
                          checkpoint_every: int = 100, dataset: str = "circle",
                          noise: float = 0.0, data_seed: int = 0, activation: str = "relu",
                          loss: str = "square") -> DyingReluResult:
    """Train ReLU networks with SGD on class-grouped and on shuffled data; count dead units.

    Both orders train from the same initial weights for a given seed (Playground's init),
    all runs vectorised together. The order is fixed for all passes, as in Playground.

    Args:
        seeds: the seeds.
        hidden: hidden widths (ReLU units).
        learning_rate: SGD step size.
        batch_size: points per update (must divide 1000).
        epochs: passes over the points.
        checkpoint_every: measure after every this many points.
        dataset: Playground generator of the 1000 points (500 per class).
        noise: its noise fraction.
        data_seed: seeds the points.
        activation: the hidden activation: ``relu``, or ``leaky_relu`` to measure that remedy
            (a unit counts as dead when its pre-activation is <= 0 on every point, as for
            ReLU, although a leaky unit there still gets a small gradient).
        loss: ``square`` (Playground's, on the ``tanh`` output) or ``logistic`` (cross-entropy
            on the linear output; see :func:`~nnlab.playground.training.sgd_step`).

    Returns:
        The :class:`DyingReluResult`.

    Raises:
        ValueError: if ``batch_size`` or ``checkpoint_every`` do not fit the data.
    """
    x, y, xt, yt = dying_relu_data(1000, dataset, noise, data_seed)
    n = len(x)
    if n % batch_size or checkpoint_every % batch_size:
        raise ValueError("batch_size must divide the 1000 points and checkpoint_every")
    seeds = tuple(int(s) for s in seeds)
    n_seeds = len(seeds)
    base = init_params(hidden, "playground", seeds)
    params = [(np.concatenate([w, w]), np.concatenate([b, b])) for w, b in base]
    neg, pos = np.flatnonzero(y < 0), np.flatnonzero(y > 0)
    orders = []
    for s in seeds:
        rng = np.random.default_rng((s, 4))
        orders.append(np.concatenate([rng.permutation(neg), rng.permutation(pos)]))
    for s in seeds:
        orders.append(np.random.default_rng((s, 5)).permutation(n))
    order = np.stack(orders)  # (2S, n)
    xo, yo = x[order], y[order]
    checkpoints = list(range(0, epochs * n + 1, checkpoint_every))
    c = len(checkpoints)
    layers = len(hidden)
    dead = np.zeros((2 * n_seeds, c, layers), dtype=np.int64)
    const = np.zeros((2 * n_seeds, c), dtype=bool)
    bias = np.zeros((2 * n_seeds, c))
    acc_tr = np.zeros((2 * n_seeds, c))
    acc_te = np.zeros((2 * n_seeds, c))
    start = time.perf_counter()
    for k, seen in enumerate(checkpoints):
        if k:
            for p0 in range(checkpoints[k - 1], seen, batch_size):
                i = p0 % n
                sgd_step(params, xo[:, i:i + batch_size], yo[:, i:i + batch_size], activation,
                          learning_rate, 0.0, loss)
        masks = dead_units(params, x, activation)
        dead[:, k] = np.stack([m.sum(-1) for m in masks], -1)
        const[:, k] = np.stack([m.all(-1) for m in masks], -1).any(-1)
        bias[:, k] = params[-1][1][:, 0]
        acc_tr[:, k] = accuracy(params, x, y, activation)
        acc_te[:, k] = accuracy(params, xt, yt, activation)
    seconds = time.perf_counter() - start

    def split(a: np.ndarray) -> np.ndarray:
        return a.reshape(2, n_seeds, *a.shape[1:])

    return DyingReluResult(
        hidden=tuple(int(h) for h in hidden), learning_rate=learning_rate,
        batch_size=batch_size, epochs=epochs, seeds=seeds, orders=ORDERS,
        points_seen=np.array(checkpoints), dead_fraction=split(dead.sum(-1) / sum(hidden)),
        dead_per_layer=split(dead), constant_output=split(const), output_bias=split(bias),
        train_accuracy=split(acc_tr), test_accuracy=split(acc_te), seconds=seconds)


def dying_relu_grid(widths: Sequence[int] = (2, 4, 8), learning_rates: Sequence[float] = (0.03, 0.3, 1.0, 3.0),
                    depth: int = 2, seeds: Sequence[int] = tuple(range(20)), epochs: int = 5,
                    **kwargs) -> dict[str, np.ndarray]:
    """:func:`dying_relu_experiment` over a grid of hidden widths and learning rates.

    Args:
        widths: units in each hidden layer.
        learning_rates: SGD step sizes.
        depth: hidden layers.
        seeds: seeds per cell.
        epochs: passes over the points.
        **kwargs: passed on to :func:`dying_relu_experiment`.

    Returns:
        ``widths``, ``learning_rates`` and arrays ``(width, rate, order)`` of seed means at
        the end of training: ``dead_fraction``, ``constant_output`` (share of networks with
        a fully dead layer), ``test_accuracy``; for each of them a ``..._runs`` array
        ``(width, rate, order, seed)`` of the per-seed values behind the mean; plus ``seconds``.
    """
    shape = (len(widths), len(learning_rates), len(ORDERS))
    keys = ("dead_fraction", "constant_output", "test_accuracy")
    out = {k: np.zeros(shape) for k in keys}
    out.update({f"{k}_runs": np.zeros((*shape, len(seeds))) for k in keys})
    start = time.perf_counter()
    kwargs.setdefault("checkpoint_every", 500)
    for i, w in enumerate(widths):
        for j, lr in enumerate(learning_rates):
            r = dying_relu_experiment(seeds=seeds, hidden=(w,) * depth, learning_rate=lr,
                                      epochs=epochs, **kwargs)
            for k in keys:
                out[k][i, j] = r.final(k).mean(1)
                out[f"{k}_runs"][i, j] = r.final(k)
    out["widths"] = np.array(widths)
    out["learning_rates"] = np.array(learning_rates, dtype=float)
    out["seconds"] = np.array(time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------------
# Measurements used by the chapters
# ---------------------------------------------------------------------------------------

def gradient_report(params: Params, x: np.ndarray, y: np.ndarray, activation: str,
                    relu_grad_at_zero: float = 0.0) -> dict[str, np.ndarray]:
    """Norms of the gradient of the mean loss over ``(x, y)``, layer by layer.

    Args:
        params: the parameter list.
        x: inputs.
        y: labels.
        activation: the hidden activation.
        relu_grad_at_zero: the value used for ReLU'(0).

    Returns:
        ``weight`` and ``bias``: ``(R, L)`` Frobenius norms of ``dL/dW_l`` and ``dL/db_l``;
        ``output_bias``: ``(R,)`` the signed ``dL/db`` of the output unit.
    """
    pre, act = forward(params, x, activation)
    grads = backward(params, pre, act, y, activation, relu_grad_at_zero)
    return {
        "weight": np.stack([np.sqrt((gw ** 2).sum((-2, -1))) for gw, _ in grads], -1),
        "bias": np.stack([np.sqrt((gb ** 2).sum(-1)) for _, gb in grads], -1),
        "output_bias": grads[-1][1][:, 0],
    }


def iterations_to_loss(history: History, threshold: float, which: str = "test") -> np.ndarray:
    """First iteration at which each run's loss is at or below ``threshold``.

    Args:
        history: a training history.
        threshold: the loss to reach.
        which: ``test`` or ``train``.

    Returns:
        ``(R,)`` float iterations, ``nan`` for a run that never got there.
    """
    curve = history.test_loss if which == "test" else history.train_loss
    hit = curve <= threshold
    return np.where(hit.any(1), hit.argmax(1), np.nan).astype(float)


def mean_activation_derivative(params: Params, x: np.ndarray, activation: str) -> np.ndarray:
    """Mean of ``act'(s)`` over the points and units of each hidden layer.

    This is the average factor by which a hidden layer scales the backward signal
    ``delta`` (before the weights act on it): the share of active units for ReLU, at most
    1/4 for the sigmoid.

    Args:
        params: the parameter list.
        x: the inputs.
        activation: the hidden activation.

    Returns:
        ``(R, H)``.
    """
    pre, act = forward(params, x, activation)
    return np.stack([activation_derivative(activation, s, a).mean((-2, -1))
                     for s, a in zip(pre[:-1], act[1:-1])], -1)


def collapse_identical_units(params: Params, tol: float = 0.0) -> Params:
    """The one-unit-per-layer network that computes what a symmetric network computes.

    If all units of every hidden layer are copies of one another, one unit per layer with
    its outgoing weight multiplied by the layer's width computes the same output.

    Args:
        params: the parameter list.
        tol: largest :func:`~nnlab.playground.network.unit_spread` accepted.

    Returns:
        Parameters of the network with hidden widths ``(1, 1, ...)``.

    Raises:
        ValueError: if some layer's units differ by more than ``tol``.
    """
    spread = unit_spread(params)
    if spread.size and spread.max() > tol:
        raise ValueError(f"units are not identical: spread {spread.max():.3g} > {tol}")
    out: Params = []
    for i, (w, b) in enumerate(params):
        w = w if i == 0 else w[:, :1, :] * params[i - 1][0].shape[-1]
        if i < len(params) - 1:
            w, b = w[:, :, :1], b[:, :1]
        out.append((w.copy(), b.copy()))
    return out
