"""TensorFlow Playground's semantics, re-created for the book (Smilkov et al., 2017).

Playground trains a small fully connected network on two-dimensional toy data in the
browser. This module reproduces what it does, so that the book can measure what the
Playground only shows:

* data: the four classification generators (``circle``, ``xor``, ``gauss``, ``spiral``),
  500 points labelled +1/-1, the noise parameter (Playground's percent / 100), shuffled once
  when generated and split 50/50 into training and test points;
* the network: inputs ``x1, x2``; hidden layers of any width (default ``[4, 2]``) with a
  ``relu``, ``tanh``, ``sigmoid`` or ``linear`` activation; a ``tanh`` output unit;
  weights drawn uniformly from ``[-0.5, 0.5)`` and biases 0.1, or everything zero
  (Playground's hidden ``initZero`` option);
* the loss ``0.5 * (out - y)**2`` per point (Playground's ``Errors.SQUARE``), averaged over
  a set of points when reported;
* training: plain SGD with learning rate 0.03 on batches of 10, the gradient averaged over
  the batch; one *iteration* is one pass over the training points, in the same order every
  pass. As in Playground, a batch that a pass leaves unfinished is completed by the first
  points of the next pass.

The forward and backward passes are written out by hand (explicit chain rule, float64), so
that the book can print every factor of a gradient; the tests check them against torch
autograd. Everything is vectorised over *runs*: parameters carry a leading run axis, so
several seeds (or several initialisations) train in one loop at the cost of one.

Shapes: a parameter list ``params`` holds one ``(W, b)`` pair per layer, with
``W`` of shape ``(R, n_in, n_out)`` and ``b`` of shape ``(R, n_out)`` for ``R`` runs.
Inputs are ``(N, 2)`` (shared by all runs) or ``(R, N, 2)``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap
from torch import nn

from nnlab.plots import PALETTE

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
DATASETS = ("circle", "xor", "gauss", "spiral")
INITS = ("playground", "zero")
DOMAIN = 6.0  # Playground draws and evaluates the plane on [-6, 6] x [-6, 6]
# -1 orange, 0 white, +1 blue: Playground's colours, taken from the book's palette
LABEL_CMAP = LinearSegmentedColormap.from_list("nnlab_labels", [PALETTE[1], "#ffffff", PALETTE[0]])

Params = list[tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    """Playground points, already shuffled and split.

    Attributes:
        name: the generator (``circle``, ``xor``, ``gauss`` or ``spiral``).
        noise: the noise parameter as a fraction (Playground's slider value / 100).
        seed: the seed the points were generated (and shuffled) with.
        x_train: ``(N_train, 2)`` float64 coordinates, in training order.
        y_train: ``(N_train,)`` labels, +1.0 or -1.0.
        x_test: ``(N_test, 2)`` coordinates.
        y_test: ``(N_test,)`` labels.
    """

    name: str
    noise: float
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _normal(rng: np.random.Generator, mean: float, variance: float, n: int) -> np.ndarray:
    """Playground's ``normalRandom``: the polar Box-Muller method, scaled by sqrt(variance)."""
    out = np.empty(n)
    for i in range(n):
        while True:
            v1, v2 = 2 * rng.random() - 1, 2 * rng.random() - 1
            s = v1 * v1 + v2 * v2
            if 0 < s <= 1:
                break
        out[i] = np.sqrt(-2 * np.log(s) / s) * v1
    return mean + np.sqrt(variance) * out


def generate(name: str, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points from one of Playground's classification generators (unshuffled).

    Args:
        name: ``circle``, ``xor``, ``gauss`` or ``spiral``.
        n: number of points (even; half of them come from each class's generator).
        noise: Playground's noise as a fraction in [0, 0.5].
        rng: the random generator.

    Returns:
        ``(x, y)``: coordinates ``(n, 2)`` and labels ``(n,)`` in {+1, -1}.

    Raises:
        ValueError: for an unknown name, an odd ``n`` or a noise outside [0, 0.5].
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if n < 2 or n % 2:
        raise ValueError(f"n must be a positive even number, got {n!r}")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise is a fraction in [0, 0.5], got {noise!r}")
    half = n // 2
    if name == "circle":
        radius = 5.0

        def ring(r_lo: float, r_hi: float) -> tuple[np.ndarray, np.ndarray]:
            r = rng.uniform(r_lo, r_hi, half)
            angle = rng.uniform(0, 2 * np.pi, half)
            pts = np.stack([r * np.sin(angle), r * np.cos(angle)], 1)
            # The label is decided on a noisy copy of the point; the point itself is kept.
            noisy = pts + rng.uniform(-radius, radius, (half, 2)) * noise
            return pts, np.where(np.hypot(noisy[:, 0], noisy[:, 1]) < radius * 0.5, 1.0, -1.0)

        (p_in, y_in), (p_out, y_out) = ring(0, radius * 0.5), ring(radius * 0.7, radius)
        return np.concatenate([p_in, p_out]), np.concatenate([y_in, y_out])
    if name == "xor":
        pts = rng.uniform(-5, 5, (n, 2))
        pts += np.where(pts > 0, 0.3, -0.3)  # Playground's padding away from the axes
        noisy = pts + rng.uniform(-5, 5, (n, 2)) * noise
        return pts, np.where(noisy[:, 0] * noisy[:, 1] >= 0, 1.0, -1.0)
    if name == "gauss":
        variance = 0.5 + (4 - 0.5) * noise / 0.5  # Playground's d3 scale [0, .5] -> [0.5, 4]
        pos = np.stack([_normal(rng, 2, variance, half), _normal(rng, 2, variance, half)], 1)
        neg = np.stack([_normal(rng, -2, variance, half), _normal(rng, -2, variance, half)], 1)
        return np.concatenate([pos, neg]), np.repeat([1.0, -1.0], half)
    # spiral
    parts = []
    for delta in (0.0, np.pi):
        i = np.arange(half)
        r = i / half * 5
        t = 1.75 * i / half * 2 * np.pi + delta
        jitter = rng.uniform(-1, 1, (half, 2)) * noise
        parts.append(np.stack([r * np.sin(t), r * np.cos(t)], 1) + jitter)
    return np.concatenate(parts), np.repeat([1.0, -1.0], half)


def make_dataset(name: str = "circle", n: int = 500, noise: float = 0.0, seed: int = 0,
                 train_fraction: float = 0.5) -> Dataset:
    """Generate, shuffle once and split Playground data, as Playground's ``generateData``.

    Args:
        name: the generator (see :func:`generate`).
        n: number of points (Playground: 500).
        noise: noise as a fraction (Playground's percent / 100).
        seed: seeds the points and the shuffle.
        train_fraction: share of the points used for training (Playground: 50%).

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: as :func:`generate`, or for a ``train_fraction`` outside (0, 1).
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    rng = np.random.default_rng((seed, 0))
    x, y = generate(name, n, noise, rng)
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]
    split = int(np.floor(n * train_fraction))
    return Dataset(name, noise, seed, x[:split], y[:split], x[split:], y[split:])


# ---------------------------------------------------------------------------------------
# The network: initialisation, forward and backward passes by hand
# ---------------------------------------------------------------------------------------

def layer_sizes(hidden: Sequence[int]) -> list[int]:
    """Units per layer, inputs first: ``[2, *hidden, 1]``."""
    return [2, *hidden, 1]


def init_params(hidden: Sequence[int] = (4, 2), init: str = "playground",
                seeds: Sequence[int] = (0,)) -> Params:
    """Initial parameters for one run per seed.

    Args:
        hidden: units per hidden layer (may be empty: the output unit sees the inputs).
        init: ``playground`` (weights uniform in [-0.5, 0.5), biases 0.1) or ``zero``.
        seeds: one run per seed; the seed fixes that run's weights.

    Returns:
        The parameter list, with a leading run axis of length ``len(seeds)``.

    Raises:
        ValueError: for an unknown ``init`` or a hidden width below 1.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden widths must be >= 1, got {list(hidden)}")
    sizes = layer_sizes(hidden)
    runs = len(seeds)
    params: Params = []
    rngs = [np.random.default_rng((int(s), 1)) for s in seeds]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        if init == "zero":
            params.append((np.zeros((runs, n_in, n_out)), np.zeros((runs, n_out))))
        else:
            w = np.stack([r.random((n_in, n_out)) - 0.5 for r in rngs])
            params.append((w, np.full((runs, n_out), 0.1)))
    return params


def activate(name: str, s: np.ndarray) -> np.ndarray:
    """Apply a hidden activation elementwise.

    Args:
        name: ``relu``, ``tanh``, ``sigmoid`` or ``linear``.
        s: pre-activations.

    Returns:
        The activations, same shape.

    Raises:
        ValueError: for an unknown activation.
    """
    if name == "relu":
        return np.maximum(s, 0.0)
    if name == "tanh":
        return np.tanh(s)
    if name == "sigmoid":
        a = np.tanh(0.5 * s)  # 0.5 * (1 + tanh(s / 2)) = 1 / (1 + exp(-s)), without overflow
        a += 1.0
        a *= 0.5
        return a
    if name == "linear":
        return s
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def activation_derivative(name: str, s: np.ndarray, a: np.ndarray,
                          relu_grad_at_zero: float = 0.0) -> np.ndarray:
    """The derivative of the activation at ``s`` (``a`` is the activation, reused).

    ReLU's derivative at exactly 0 is a convention; Playground and PyTorch both use 0.

    Args:
        name: the activation.
        s: pre-activations.
        a: ``activate(name, s)``.
        relu_grad_at_zero: the value used for ReLU'(0).

    Returns:
        The elementwise derivative.
    """
    if name == "relu":
        d = (s > 0).astype(s.dtype)
        if relu_grad_at_zero:
            d += relu_grad_at_zero * (s == 0)
        return d
    if name == "tanh":
        return 1.0 - a * a
    if name == "sigmoid":
        d = 1.0 - a
        d *= a
        return d
    if name == "linear":
        return np.ones_like(s)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def forward(params: Params, x: np.ndarray, activation: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The forward pass, keeping what the backward pass needs.

    Layer l computes ``s_l = a_{l-1} W_l + b_l`` and ``a_l = act(s_l)``; the last layer's
    activation is ``tanh``.

    Args:
        params: the parameter list (leading run axis).
        x: inputs ``(N, 2)`` or ``(R, N, 2)``.
        activation: the hidden activation.

    Returns:
        ``(pre, act)``: the pre-activations ``s_1..s_L`` and the activations ``a_0..a_L``
        (``a_0`` is ``x``), each ``(R, N, units)``.
    """
    pre, act = [], [x]
    a = x
    last = len(params) - 1
    for i, (w, b) in enumerate(params):
        s = a @ w + b[:, None, :]
        a = np.tanh(s) if i == last else activate(activation, s)
        pre.append(s)
        act.append(a)
    return pre, act


def backward(params: Params, pre: list[np.ndarray], act: list[np.ndarray], y: np.ndarray,
             activation: str, relu_grad_at_zero: float = 0.0,
             return_deltas: bool = False):
    """The backward pass: gradients of the mean loss ``mean(0.5 * (out - y)**2)``.

    With ``delta_l = dL/ds_l`` (one row per point):
    ``delta_L = (out - y) * (1 - out**2)``, ``delta_l = (delta_{l+1} W_{l+1}^T) * act'(s_l)``,
    ``dL/dW_l = a_{l-1}^T delta_l / N`` and ``dL/db_l = mean(delta_l)``.

    Args:
        params: the parameter list.
        pre: pre-activations from :func:`forward`.
        act: activations from :func:`forward`.
        y: targets ``(N,)`` or ``(R, N)``.
        activation: the hidden activation.
        relu_grad_at_zero: the value used for ReLU'(0) (Playground, PyTorch: 0).
        return_deltas: also return the per-point ``delta_l``.

    Returns:
        One ``(dW, db)`` pair per layer (shapes as ``params``); with ``return_deltas``,
        ``(grads, deltas)``.
    """
    out = act[-1]
    n = out.shape[-2]
    # scaled by 1/n once, so that the per-layer sums below are already means
    delta = (out - y[..., None]) * (1.0 - out * out) * (1.0 / n)
    grads: Params = [None] * len(params)  # type: ignore[list-item]
    deltas = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        if return_deltas:
            deltas[i] = delta * n
        grads[i] = (np.swapaxes(act[i], -1, -2) @ delta, delta.sum(-2))
        if i:
            delta = delta @ np.swapaxes(params[i][0], -1, -2)
            if activation == "relu" and not relu_grad_at_zero:
                delta *= pre[i - 1] > 0
            elif activation != "linear":
                delta *= activation_derivative(activation, pre[i - 1], act[i], relu_grad_at_zero)
    return (grads, deltas) if return_deltas else grads


def predict(params: Params, x: np.ndarray, activation: str) -> np.ndarray:
    """Network outputs in (-1, 1), shape ``(R, N)``."""
    return forward(params, x, activation)[1][-1][..., 0]


def loss(params: Params, x: np.ndarray, y: np.ndarray, activation: str) -> np.ndarray:
    """Playground's loss, ``mean(0.5 * (out - y)**2)`` over the points, one value per run."""
    return 0.5 * ((predict(params, x, activation) - y) ** 2).mean(-1)


def accuracy(params: Params, x: np.ndarray, y: np.ndarray, activation: str) -> np.ndarray:
    """Share of points whose output has the sign of the label (0 counts as +1), per run."""
    out = predict(params, x, activation)
    return (np.where(out >= 0, 1.0, -1.0) == y).mean(-1)


def select_run(params: Params, run: int) -> Params:
    """The parameters of one run, keeping a run axis of length 1."""
    return [(w[run:run + 1].copy(), b[run:run + 1].copy()) for w, b in params]


def copy_params(params: Params) -> Params:
    """A deep copy of a parameter list."""
    return [(w.copy(), b.copy()) for w, b in params]


def unit_spread(params: Params) -> np.ndarray:
    """How far the units of each hidden layer are from being copies of one another.

    For hidden layer ``l``: the largest, over its units ``j, k``, of the differences between
    their incoming weights, their biases and their outgoing weights.

    Args:
        params: the parameter list.

    Returns:
        ``(R, H)``, one value per run and hidden layer (0: all units identical).
    """
    out = []
    for i in range(len(params) - 1):
        w_in, b = params[i]
        w_out = params[i + 1][0]
        out.append(np.maximum.reduce([np.ptp(w_in, axis=-1).max(-1), np.ptp(b, axis=-1),
                                      np.ptp(w_out, axis=-2).max(-1)]))
    return np.stack(out, -1) if out else np.zeros((params[0][0].shape[0], 0))


def to_torch(params: Params, activation: str, run: int = 0) -> nn.Sequential:
    """The same network as a float64 ``nn.Sequential`` (for autograd checks and reuse).

    Args:
        params: the parameter list.
        activation: the hidden activation.
        run: which run to copy.

    Returns:
        ``Linear -> act -> ... -> Linear -> Tanh`` with copied weights.
    """
    modules: list[nn.Module] = []
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
    for i, (w, b) in enumerate(params):
        lin = nn.Linear(w.shape[1], w.shape[2], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w[run].T.copy()))
            lin.bias.copy_(torch.from_numpy(b[run].copy()))
        modules += [lin, nn.Tanh() if i == len(params) - 1 else acts[activation]()]
    return nn.Sequential(*modules)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

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
            two of its units' parameters (see :func:`unit_spread`); 0 means every unit of
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


def _sgd_step(params: Params, xb: np.ndarray, yb: np.ndarray, activation: str, lr: float,
              relu_grad_at_zero: float) -> None:
    """One SGD update in place: :func:`backward`'s recursion with ``lr / batch`` folded in.

    Every ``delta`` is computed with the weights from before the update, as Playground
    does; the learning rate is applied once to ``delta_L`` instead of to every gradient.
    """
    pre, act = forward(params, xb, activation)
    out = act[-1]
    delta = out - yb[..., None]
    delta *= 1.0 - out * out
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
        data: the points (the training points are visited in their stored order).
        seeds: one run per seed (the seed fixes the initial weights).
        snapshot_at: iterations (0 = before training) whose parameters are kept.
        params: start from these parameters instead of ``config.init`` (copied).

    Returns:
        The :class:`History`.
    """
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
                _sgd_step(params, x_ext[s:s + bs], y_ext[s:s + bs], config.activation,
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
                          noise: float = 0.0, data_seed: int = 0) -> DyingReluResult:
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
                _sgd_step(params, xo[:, i:i + batch_size], yo[:, i:i + batch_size], "relu",
                          learning_rate, 0.0)
        masks = dead_units(params, x)
        dead[:, k] = np.stack([m.sum(-1) for m in masks], -1)
        const[:, k] = np.stack([m.all(-1) for m in masks], -1).any(-1)
        bias[:, k] = params[-1][1][:, 0]
        acc_tr[:, k] = accuracy(params, x, y, "relu")
        acc_te[:, k] = accuracy(params, xt, yt, "relu")
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
        a fully dead layer), ``test_accuracy``; plus ``seconds``.
    """
    shape = (len(widths), len(learning_rates), len(ORDERS))
    out = {k: np.zeros(shape) for k in ("dead_fraction", "constant_output", "test_accuracy")}
    start = time.perf_counter()
    kwargs.setdefault("checkpoint_every", 500)
    for i, w in enumerate(widths):
        for j, lr in enumerate(learning_rates):
            r = dying_relu_experiment(seeds=seeds, hidden=(w,) * depth, learning_rate=lr,
                                      epochs=epochs, **kwargs)
            for k in out:
                out[k][i, j] = r.final(k).mean(1)
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


def stack_runs(*param_lists: Params) -> Params:
    """Concatenate parameter lists of the same architecture along the run axis."""
    return [(np.concatenate([p[i][0] for p in param_lists]),
             np.concatenate([p[i][1] for p in param_lists])) for i in range(len(param_lists[0]))]


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
        tol: largest :func:`unit_spread` accepted.

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


def max_abs_weights(params: Params) -> np.ndarray:
    """``(R, L)``: the largest absolute weight of each layer."""
    return np.stack([np.abs(w).max((-2, -1)) for w, _ in params], -1)


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------

def _plane(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    ticks = np.linspace(-DOMAIN, DOMAIN, resolution)
    gx, gy = np.meshgrid(ticks, ticks[::-1])
    return ticks, np.stack([gx.ravel(), gy.ravel()], 1)


def _draw_boundary(ax, params: Params, activation: str, data: Dataset | None, run: int,
                   resolution: int, title: str | None, show_test: bool, marker_size: float):
    _, grid = _plane(resolution)
    out = predict(select_run(params, run), grid, activation)[0].reshape(resolution, resolution)
    ext = (-DOMAIN, DOMAIN, -DOMAIN, DOMAIN)
    im = ax.imshow(out, cmap=LABEL_CMAP, vmin=-1, vmax=1, extent=ext, interpolation="bilinear")
    if out.min() < 0 < out.max():
        ax.contour(out[::-1], levels=[0.0], colors="black", linewidths=1.0, extent=ext)
    if data is not None:
        sets = [(data.x_train, data.y_train, "white")]
        if show_test:
            sets.append((data.x_test, data.y_test, "black"))
        for x, y, edge in sets:
            colours = np.where(y > 0, PALETTE[0], PALETTE[1])
            ax.scatter(x[:, 0], x[:, 1], c=colours, s=marker_size, edgecolors=edge, linewidths=0.5)
    ax.set_xlim(-DOMAIN, DOMAIN)
    ax.set_ylim(-DOMAIN, DOMAIN)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return im


def plot_activation_derivatives(activations: Sequence[str] = ("relu", "sigmoid", "tanh"),
                                span: float = 6.0):
    """The derivative of each activation over ``[-span, span]``.

    Args:
        activations: which activations.
        span: half-width of the pre-activation axis.

    Returns:
        The figure.
    """
    s = np.linspace(-span, span, 1201)
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    for colour, name in zip(PALETTE, activations):
        d = activation_derivative(name, s, activate(name, s))
        ax.plot(s, d, color=colour, label=name)
    ax.axhline(0.25, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("pre-activation $s$")
    ax.set_ylabel("derivative $\\theta'(s)$")
    ax.legend()
    return fig


def plot_boundaries(panels: Sequence[tuple], data: Dataset | None, activation: str = "relu",
                    run: int = 0, resolution: int = 121, show_test: bool = False):
    """Decision-boundary heatmaps side by side: the network output over the plane.

    The colour is the output in [-1, 1] (orange -1, blue +1), the black line the boundary
    ``out = 0``; dots are the training points coloured by label.

    Args:
        panels: ``(title, params)`` or ``(title, params, activation)`` tuples.
        data: points to draw (or ``None``).
        activation: the hidden activation of panels that do not name one.
        run: which run of each parameter list.
        resolution: grid points per axis.
        show_test: also draw the test points (black edge).

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels) + 0.8, 3.5), squeeze=False)
    im = None
    for ax, panel in zip(axes[0], panels):
        title, params = panel[0], panel[1]
        act = panel[2] if len(panel) > 2 else activation
        im = _draw_boundary(ax, params, act, data, run, resolution, title, show_test, 12)
    fig.colorbar(im, ax=list(axes[0]), label="network output", shrink=0.85)
    return fig


def plot_neurons(params: Params, activation: str, run: int = 0, resolution: int = 61):
    """One small heatmap per unit: what each hidden unit and the output compute on the plane.

    Colours as :func:`plot_boundaries`, clipped to [-1, 1] (as Playground does).

    Args:
        params: the parameter list.
        activation: the hidden activation.
        run: which run.
        resolution: grid points per axis.

    Returns:
        The figure (one row per layer, inputs side first).
    """
    _, grid = _plane(resolution)
    _, act = forward(select_run(params, run), grid, activation)
    layers = act[1:]
    cols = max(a.shape[-1] for a in layers)
    fig, axes = plt.subplots(len(layers), cols, figsize=(1.45 * cols + 0.6, 1.5 * len(layers)),
                             squeeze=False)
    for li, a in enumerate(layers):
        for j in range(cols):
            ax = axes[li][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j >= a.shape[-1]:
                ax.axis("off")
                continue
            ax.imshow(a[0, :, j].reshape(resolution, resolution), cmap=LABEL_CMAP, vmin=-1, vmax=1,
                      extent=(-DOMAIN, DOMAIN, -DOMAIN, DOMAIN))
            name = "output" if li == len(layers) - 1 else f"layer {li + 1}, unit {j + 1}"
            ax.set_title(name, fontsize=9)
    return fig


def _band(ax, x: np.ndarray, runs: np.ndarray, colour: str, label: str) -> None:
    ax.plot(x, np.median(runs, 0), color=colour, label=label)
    if len(runs) > 1:
        ax.fill_between(x, runs.min(0), runs.max(0), color=colour, alpha=0.2, lw=0)


def plot_losses(histories: dict[str, History], logy: bool = True):
    """Training and test loss per iteration: median over runs, band from min to max.

    Args:
        histories: named histories (one colour each).
        logy: logarithmic loss axis.

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3), sharey=True)
    for ax, key in zip(axes, ("train_loss", "test_loss")):
        for colour, (name, h) in zip(PALETTE, histories.items()):
            curve = getattr(h, key)
            _band(ax, np.arange(curve.shape[1]), curve, colour, name)
        ax.set_xlabel("iteration (passes over the training points)")
        ax.set_title(key.replace("_", " "))
        if logy:
            ax.set_yscale("log")
    axes[0].set_ylabel("loss, mean of ½(out − y)²")
    axes[0].legend()
    return fig


def plot_grad_norms(histories: dict[str, History], logx: bool = False):
    """Per-layer gradient norms ``||dL/dW_l||`` over training, one panel per history.

    Median over runs (line) and min-max band; ``L`` is the mean loss on the training points.

    Args:
        histories: named histories.
        logx: logarithmic iteration axis (iteration 0 is dropped).

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(1, len(histories), figsize=(3.5 * len(histories) + 0.5, 3.2), squeeze=False,
                             sharey=True)
    for ax, (name, h) in zip(axes[0], histories.items()):
        it = np.arange(h.grad_norm.shape[1])
        first = 1 if logx else 0
        n_layers = h.grad_norm.shape[2]
        for layer in range(n_layers):
            label = "output layer" if layer == n_layers - 1 else f"layer {layer + 1}"
            _band(ax, it[first:], h.grad_norm[:, first:, layer], PALETTE[layer % len(PALETTE)], label)
        ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("iteration")
    axes[0][0].set_ylabel("gradient norm ‖∂L/∂W‖")
    axes[0][0].legend()
    return fig


def boundary_frames(history: History, data: Dataset, iterations: Sequence[int] | None = None,
                    run: int = 0, resolution: int = 61, size_in: float = 3.0,
                    dpi: int = 100) -> tuple[list[bytes], list[str]]:
    """Small PNG frames of the decision boundary at stored snapshots.

    Args:
        history: a history with ``snapshots`` at the wanted iterations.
        data: the points to draw.
        iterations: which snapshots (default: all, in order).
        run: which run.
        resolution: grid points per axis.
        size_in: frame width and height in inches.
        dpi: dots per inch (``size_in * dpi`` pixels wide).

    Returns:
        ``(frames, labels)``: PNG bytes and one label per frame.

    Raises:
        KeyError: for an iteration without a snapshot.
    """
    iterations = sorted(history.snapshots) if iterations is None else list(iterations)
    frames, labels = [], []
    for t in iterations:
        params = history.snapshots[t]
        fig, ax = plt.subplots(figsize=(size_in, size_in), dpi=dpi)
        _draw_boundary(ax, params, history.config.activation, data, run, resolution, None, False, 6)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        frames.append(buf.getvalue())
        labels.append(f"iteration {t}: test loss {history.test_loss[run, t]:.3f}")
    return frames, labels


def boundary_slider(history: History, data: Dataset, iterations: Sequence[int] | None = None,
                    run: int = 0, caption: str = ""):
    """An HTML slider that scrubs the decision boundary through training (no kernel needed).

    Args:
        history: a history with snapshots.
        data: the points to draw.
        iterations: which snapshots (default: all).
        run: which run.
        caption: text shown under the slider.

    Returns:
        The :class:`nnlab.widgets.SliderHTML` object.
    """
    from nnlab import widgets

    frames, labels = boundary_frames(history, data, iterations, run)
    alt = (f"Decision boundary of the {history.config.activation} network on the "
           f"{data.name} data; the slider selects the training iteration.")
    return widgets.slider(frames, labels, alt=alt, caption=caption)


def plot_dying_relu(result: DyingReluResult):
    """Dead units, test accuracy and output bias through training, grouped vs shuffled order.

    Lines are means over seeds; bands span the 10th to 90th percentile of the seeds.

    Args:
        result: from :func:`dying_relu_experiment`.

    Returns:
        The figure.
    """
    epochs = result.points_seen / 1000
    panels = [("dead_fraction", "share of hidden units dead"), ("test_accuracy", "test accuracy"),
              ("output_bias", "output bias")]
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.3))
    for ax, (key, label) in zip(axes, panels):
        arr = getattr(result, key)
        for o, (name, colour) in enumerate(zip(result.orders, (PALETTE[3], PALETTE[0]))):
            ax.plot(epochs, arr[o].mean(0), color=colour, label=name)
            lo, hi = np.percentile(arr[o], [10, 90], axis=0)
            ax.fill_between(epochs, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.set_xlabel("epochs (passes over the 1000 points)")
        ax.set_ylabel(label)
    axes[0].legend(title="order")
    return fig


def plot_dying_grid(grid: dict[str, np.ndarray]):
    """Heatmaps of the final dead-unit share over widths and learning rates, one per order.

    Args:
        grid: from :func:`dying_relu_grid`.

    Returns:
        The figure.
    """
    dead = grid["dead_fraction"]
    fig, axes = plt.subplots(1, len(ORDERS), figsize=(4.0 * len(ORDERS) + 0.8, 3.0))
    im = None
    for o, ax in enumerate(axes):
        im = ax.imshow(dead[:, :, o], cmap="Oranges", vmin=0, vmax=max(0.5, dead.max()),
                       origin="lower", aspect="auto")
        for i in range(dead.shape[0]):
            for j in range(dead.shape[1]):
                ax.text(j, i, f"{dead[i, j, o]:.2f}", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(dead.shape[1]), [f"{lr:g}" for lr in grid["learning_rates"]])
        ax.set_yticks(range(dead.shape[0]), [str(w) for w in grid["widths"]])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("units per hidden layer")
        ax.set_title(f"{ORDERS[o]} order")
        ax.grid(False)
    fig.colorbar(im, ax=list(axes), label="share of hidden units dead")
    return fig
