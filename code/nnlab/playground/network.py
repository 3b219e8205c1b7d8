"""The Playground network by hand: initialisation, forward and backward passes, helpers.

The passes are written out with the explicit chain rule in float64, vectorised over runs
(see :mod:`nnlab.playground` for the shapes); :func:`to_torch` copies a run into an
``nn.Sequential`` for autograd checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "leaky_relu", "centred_sigmoid", "scaled_sigmoid",
               "half_centred_sigmoid")
LEAKY_SLOPE = 0.01  # leaky ReLU's slope for s < 0 (PyTorch's default)
INITS = ("playground", "zero")

Params = list[tuple[np.ndarray, np.ndarray]]


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

    Besides Playground's four (``relu``, ``tanh``, ``sigmoid``, ``linear``) there are three
    for the book's experiments: ``leaky_relu`` (slope ``LEAKY_SLOPE`` for ``s < 0``),
    two rescaled sigmoids whose slope, like ReLU's and tanh's, reaches 1:
    ``centred_sigmoid`` ``4 sigmoid(s) - 2 = 2 tanh(s / 2)`` (zero-centred) and
    ``scaled_sigmoid`` ``4 sigmoid(s)`` (outputs in (0, 4), mean about 2 near 0), and the
    shifted sigmoid ``half_centred_sigmoid`` ``sigmoid(s) - 1/2 = tanh(s / 2) / 2``
    (zero-centred, slope at most 1/4, like the sigmoid's).

    Args:
        name: one of ``ACTIVATIONS``.
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
    if name == "leaky_relu":
        return np.where(s > 0, s, LEAKY_SLOPE * s)
    if name == "centred_sigmoid":
        return 2.0 * np.tanh(0.5 * s)
    if name == "scaled_sigmoid":
        return 2.0 * (1.0 + np.tanh(0.5 * s))
    if name == "half_centred_sigmoid":
        return 0.5 * np.tanh(0.5 * s)
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
    if name == "leaky_relu":
        return np.where(s > 0, 1.0, LEAKY_SLOPE)
    if name == "centred_sigmoid":  # 1 - tanh(s/2)^2, with a = 2 tanh(s/2)
        return 1.0 - 0.25 * a * a
    if name == "scaled_sigmoid":  # 4 sigma (1 - sigma), with a = 4 sigma
        return a * (4.0 - a) * 0.25
    if name == "half_centred_sigmoid":  # sigma (1 - sigma) = 1/4 - a^2, with a = sigma - 1/2
        return 0.25 - a * a
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


# ---------------------------------------------------------------------------------------
# Parameter helpers, and the same network in torch
# ---------------------------------------------------------------------------------------

def select_run(params: Params, run: int) -> Params:
    """The parameters of one run, keeping a run axis of length 1."""
    return [(w[run:run + 1].copy(), b[run:run + 1].copy()) for w, b in params]


def copy_params(params: Params) -> Params:
    """A deep copy of a parameter list."""
    return [(w.copy(), b.copy()) for w, b in params]

def stack_runs(*param_lists: Params) -> Params:
    """Concatenate parameter lists of the same architecture along the run axis."""
    return [(np.concatenate([p[i][0] for p in param_lists]),
             np.concatenate([p[i][1] for p in param_lists])) for i in range(len(param_lists[0]))]


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


def max_abs_weights(params: Params) -> np.ndarray:
    """``(R, L)``: the largest absolute weight of each layer."""
    return np.stack([np.abs(w).max((-2, -1)) for w, _ in params], -1)


class _Affine(nn.Module):
    """``scale * inner(s) + shift``: the rescaled sigmoids in torch."""

    def __init__(self, inner: nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.inner, self.scale, self.shift = inner, scale, shift

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.scale * self.inner(s) + self.shift


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
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity,
            "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE), "centred_sigmoid": lambda: _Affine(nn.Sigmoid(), 4.0, -2.0),
            "scaled_sigmoid": lambda: _Affine(nn.Sigmoid(), 4.0, 0.0),
            "half_centred_sigmoid": lambda: _Affine(nn.Sigmoid(), 1.0, -0.5)}
    for i, (w, b) in enumerate(params):
        lin = nn.Linear(w.shape[1], w.shape[2], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w[run].T.copy()))
            lin.bias.copy_(torch.from_numpy(b[run].copy()))
        modules += [lin, nn.Tanh() if i == len(params) - 1 else acts[activation]()]
    return nn.Sequential(*modules)
