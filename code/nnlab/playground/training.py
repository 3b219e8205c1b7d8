"""Training Playground networks: the configuration, the SGD loop and what it records.

Plain SGD on batches in a fixed order, every run of a parameter list at once; see
:mod:`nnlab.playground` for the exact semantics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from nnlab.playground.data import Dataset, check_labels
from nnlab.playground.network import (
    ACTIVATIONS,
    INITS,
    Params,
    activation_derivative,
    backward,
    copy_params,
    forward,
    init_params,
    loss,
    stack_runs,
    unit_spread,
)


@dataclass(frozen=True)
class PlaygroundConfig:
    """A Playground network and its training settings.

    Attributes:
        hidden: units per hidden layer (Playground's default ``[4, 2]``).
        activation: ``relu``, ``tanh``, ``sigmoid`` or ``linear``.
        init: ``playground`` (uniform [-0.5, 0.5) weights, biases 0.1) or ``zero``.
        learning_rate: SGD step size (Playground's default 0.03).
        batch_size: points per update; the gradient is averaged over the batch.
        iterations: passes over the training points.
        relu_grad_at_zero: the value used for ReLU'(0) (0 in Playground and PyTorch).
    """

    hidden: tuple[int, ...] = (4, 2)
    activation: str = "relu"
    init: str = "playground"
    learning_rate: float = 0.03
    batch_size: int = 10
    iterations: int = 250
    relu_grad_at_zero: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.activation not in ACTIVATIONS:
            problems.append(f"unknown activation {self.activation!r}")
        if self.init not in INITS:
            problems.append(f"unknown init {self.init!r}")
        if any(int(h) < 1 for h in self.hidden):
            problems.append(f"hidden widths must be >= 1, got {list(self.hidden)}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.batch_size < 1 or self.iterations < 0:
            problems.append("batch_size must be >= 1 and iterations >= 0")
        if problems:
            raise ValueError("invalid PlaygroundConfig: " + "; ".join(problems))


@dataclass
class History:
    """What a training call recorded, one row per run.

    Attributes:
        config: the configuration trained.
        seeds: the seed of each run.
        train_loss: ``(R, T+1)`` loss on the training points after each iteration
            (column 0: before training).
        test_loss: ``(R, T+1)`` loss on the test points.
        grad_norm: ``(R, T+1, L)`` Frobenius norm of ``dL/dW_l`` for each layer ``l``
            (inputs side first), ``L`` the mean loss over all training points.
        delta_rms: ``(R, T+1, L)`` root-mean-square of ``delta_l = dL/ds_l`` over the
            training points and the layer's units.
        unit_spread: ``(R, T+1, H)`` for each hidden layer, the largest difference between
            two of its units' parameters (see
            :func:`~nnlab.playground.network.unit_spread`); 0 means every unit of
            the layer is an exact copy of the others.
        snapshots: iteration -> parameters at the end of that iteration.
        params: the final parameters.
        seconds: wall-clock time of the training loop.
    """

    config: PlaygroundConfig
    seeds: tuple[int, ...]
    train_loss: np.ndarray
    test_loss: np.ndarray
    grad_norm: np.ndarray
    delta_rms: np.ndarray
    unit_spread: np.ndarray
    snapshots: dict[int, Params] = field(default_factory=dict)
    params: Params = field(default_factory=list)
    seconds: float = 0.0


LOSSES = ("square", "logistic")


def sgd_step(params: Params, xb: np.ndarray, yb: np.ndarray, activation: str, lr: float,
             relu_grad_at_zero: float, loss: str = "square") -> None:
    """One SGD update in place, with ``lr / batch`` folded into the backward recursion.

    The recursion is that of :func:`~nnlab.playground.network.backward`. Every ``delta`` is
    computed with the weights from before the update, as Playground does; the learning rate
    is applied once to ``delta_L`` instead of to every gradient.

    ``loss`` is Playground's ``square`` loss on the ``tanh`` output, ``0.5 (tanh(z) - y)^2``,
    or ``logistic``: the cross-entropy ``log(1 + exp(-y z))`` of the output's linear
    pre-activation ``z`` (the ``tanh`` is then only read for its sign), whose ``delta_L =
    -y sigmoid(-y z)`` does not vanish when the output is confidently wrong.
    """
    pre, act = forward(params, xb, activation)
    out = act[-1]
    if loss == "square":
        delta = out - yb[..., None]
        delta *= 1.0 - out * out
    elif loss == "logistic":
        yz = yb[..., None] * pre[-1]
        delta = -yb[..., None] * 0.5 * (1.0 - np.tanh(0.5 * yz))  # -y sigmoid(-y z), no overflow
    else:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    delta *= lr / out.shape[-2]
    for i in range(len(params) - 1, -1, -1):
        w, b = params[i]
        back = delta @ np.swapaxes(w, -1, -2) if i else None
        w -= np.swapaxes(act[i], -1, -2) @ delta
        b -= delta.sum(-2)
        if i:
            if activation == "relu" and not relu_grad_at_zero:
                back *= pre[i - 1] > 0
            elif activation != "linear":
                back *= activation_derivative(activation, pre[i - 1], act[i], relu_grad_at_zero)
            delta = back


def _measure(params: Params, data: Dataset, config: PlaygroundConfig):
    pre, act = forward(params, data.x_train, config.activation)
    grads, deltas = backward(params, pre, act, data.y_train, config.activation,
                             config.relu_grad_at_zero, return_deltas=True)
    train = 0.5 * ((act[-1][..., 0] - data.y_train) ** 2).mean(-1)
    test = loss(params, data.x_test, data.y_test, config.activation)
    gnorm = np.stack([np.sqrt((gw ** 2).sum((-2, -1))) for gw, _ in grads], -1)
    drms = np.stack([np.sqrt((d ** 2).mean((-2, -1))) for d in deltas], -1)
    return train, test, gnorm, drms, unit_spread(params)


def train(config: PlaygroundConfig, data: Dataset, seeds: Sequence[int] = (0,), *,
          snapshot_at: Sequence[int] = (), params: Params | None = None) -> History:
    """Train one network per seed on the same data, Playground-style, all runs at once.

    Args:
        config: network and training settings.
        data: the points (the training points are visited in their stored order); their
            labels must be -1 and +1, as :class:`~nnlab.playground.data.Dataset` ensures.
        seeds: one run per seed (the seed fixes the initial weights).
        snapshot_at: iterations (0 = before training) whose parameters are kept.
        params: start from these parameters instead of ``config.init`` (copied).

    Returns:
        The :class:`History`.

    Raises:
        TypeError: if ``data`` is not a :class:`~nnlab.playground.data.Dataset`.
        ValueError: for labels other than -1 and +1 (see
            :func:`~nnlab.playground.data.check_labels`), or a batch larger than the
            training set.
    """
    if not isinstance(data, Dataset):
        raise TypeError("data must be a Dataset: make_dataset(...) for Playground's generators, "
                        "Dataset.from_arrays(x, y) for points of your own; "
                        f"got {type(data).__name__}")
    check_labels(data.y_train, "data.y_train")  # again: the arrays may have changed since
    check_labels(data.y_test, "data.y_test")
    params = copy_params(params) if params is not None else init_params(config.hidden, config.init, seeds)
    seeds = tuple(int(s) for s in seeds)
    n, bs, t_max = len(data.x_train), config.batch_size, config.iterations
    if bs > n:
        raise ValueError(f"batch_size {bs} exceeds the {n} training points")
    runs, layers = params[0][0].shape[0], len(params)
    hist = History(config, seeds, np.empty((runs, t_max + 1)), np.empty((runs, t_max + 1)),
                   np.empty((runs, t_max + 1, layers)), np.empty((runs, t_max + 1, layers)),
                   np.empty((runs, t_max + 1, layers - 1)))
    wanted = {int(t) for t in snapshot_at}
    # the stream of points repeats the training order; a batch may straddle two passes
    x_ext = np.concatenate([data.x_train, data.x_train[:bs]])
    y_ext = np.concatenate([data.y_train, data.y_train[:bs]])
    start = time.perf_counter()
    updates_done = 0
    for t in range(t_max + 1):
        if t:
            while (updates_done + 1) * bs <= t * n:
                s = (updates_done * bs) % n
                sgd_step(params, x_ext[s:s + bs], y_ext[s:s + bs], config.activation,
                          config.learning_rate, config.relu_grad_at_zero)
                updates_done += 1
        tr, te, gn, dr, sp = _measure(params, data, config)
        hist.train_loss[:, t], hist.test_loss[:, t] = tr, te
        hist.grad_norm[:, t], hist.delta_rms[:, t], hist.unit_spread[:, t] = gn, dr, sp
        if t in wanted:
            hist.snapshots[t] = copy_params(params)
    hist.params = params
    hist.seconds = time.perf_counter() - start
    return hist


def _run_slice(hist: History, config: PlaygroundConfig, seeds: tuple[int, ...], runs: slice,
               snapshot_at: Sequence[int]) -> History:
    def part(params: Params) -> Params:
        return [(w[runs].copy(), b[runs].copy()) for w, b in params]

    return History(config, seeds, hist.train_loss[runs], hist.test_loss[runs],
                   hist.grad_norm[runs], hist.delta_rms[runs], hist.unit_spread[runs],
                   {t: part(hist.snapshots[t]) for t in snapshot_at}, part(hist.params),
                   hist.seconds)


def train_many(runs: dict[str, tuple[PlaygroundConfig, Sequence[int]]], data: Dataset,
               snapshot_at: dict[str, Sequence[int]] | None = None) -> dict[str, History]:
    """Train several named configurations, sharing one loop where only ``init`` differs.

    Configurations that agree on everything but the initialisation (say, random and zero
    starts of the same network) train in one vectorised loop, which costs about as much as
    one of them alone.

    Args:
        runs: name -> ``(config, seeds)``.
        data: the points.
        snapshot_at: name -> iterations whose parameters are kept.

    Returns:
        name -> :class:`History` (``seconds`` is the time of the shared loop).
    """
    snapshot_at = snapshot_at or {}
    groups: dict[PlaygroundConfig, list[str]] = {}
    for name, (config, _) in runs.items():
        groups.setdefault(replace(config, init="playground"), []).append(name)
    out: dict[str, History] = {}
    for shared, names in groups.items():
        params = stack_runs(*[init_params(runs[n][0].hidden, runs[n][0].init, runs[n][1])
                              for n in names])
        wanted = sorted({int(t) for n in names for t in snapshot_at.get(n, ())})
        hist = train(shared, data, seeds=(), snapshot_at=wanted, params=params)
        first = 0
        for n in names:
            config, seeds = runs[n]
            count = len(seeds)
            out[n] = _run_slice(hist, config, tuple(int(s) for s in seeds),
                                slice(first, first + count), snapshot_at.get(n, ()))
            first += count
    return {n: out[n] for n in runs}
