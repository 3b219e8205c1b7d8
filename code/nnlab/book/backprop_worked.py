"""Backpropagation worked by hand and checked: a 2-2-1 network with concrete numbers, the
batched (matrix) backward pass, the softmax-cross-entropy gradient and a finite-difference
gradient check. Everything runs in float64 and in milliseconds.

Each function computes the hand-written result and an independent reference (PyTorch's
autograd or central differences) so that a chapter can show both and the tests can compare.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

#: The worked example's numbers: two inputs, two tanh hidden units, one linear output and the
#: loss 1/2 (out - y)^2. Chosen so that no value is 0 or 1 and the arithmetic stays readable.
WORKED = {
    "x": [1.0, -2.0],
    "W1": [[0.5, -0.3], [0.2, 0.4]],
    "b1": [0.1, -0.1],
    "W2": [[0.7, -0.6]],
    "b2": [0.05],
    "y": 0.5,
}


def _tensors(values: dict) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}


def worked_by_hand(values: dict = WORKED) -> dict[str, np.ndarray | float]:
    """Forward and backward pass of the 2-2-1 example, one equation at a time.

    The network is ``s1 = W1 x + b1``, ``h = tanh(s1)``, ``out = W2 h + b2`` with the loss
    ``1/2 (out - y)^2``. Returns every intermediate value as NumPy arrays or floats: ``s1``,
    ``h``, ``out``, ``loss``, ``delta2`` (dL/d out), ``delta1`` (dL/d s1) and the gradients
    ``gW2``, ``gb2``, ``gW1``, ``gb1``.
    """
    t = _tensors(values)
    s1 = t["W1"] @ t["x"] + t["b1"]
    h = torch.tanh(s1)
    out = t["W2"] @ h + t["b2"]
    loss = 0.5 * (out - t["y"]) ** 2
    delta2 = out - t["y"]                              # the output is linear: theta' = 1
    delta1 = (1 - h**2) * (t["W2"].T @ delta2)         # tanh' = 1 - tanh^2, then W^T delta
    result = {"s1": s1, "h": h, "out": out, "loss": loss, "delta2": delta2, "delta1": delta1,
              "gW2": torch.outer(delta2, h), "gb2": delta2,
              "gW1": torch.outer(delta1, t["x"]), "gb1": delta1}
    return {k: (float(v.reshape(-1)[0]) if v.numel() == 1 else v.numpy()) for k, v in result.items()}


def worked_by_autograd(values: dict = WORKED) -> dict[str, np.ndarray]:
    """The gradients of the same example from PyTorch's autograd (``gW1``, ``gb1``, ``gW2``, ``gb2``)."""
    t = _tensors(values)
    params = {k: t[k].requires_grad_() for k in ("W1", "b1", "W2", "b2")}
    out = params["W2"] @ torch.tanh(params["W1"] @ t["x"] + params["b1"]) + params["b2"]
    (0.5 * (out - t["y"]) ** 2).sum().backward()
    return {"g" + k: p.grad.numpy() for k, p in params.items()}


def worked_table(values: dict = WORKED) -> pd.DataFrame:
    """The worked example as a table: one row per quantity, its formula and its value."""
    r = worked_by_hand(values)

    def fmt(v) -> str:
        return ", ".join(f"{x:.4f}" for x in np.ravel(v)).replace("-", "−")

    rows = [
        ("forward", "$s^{(1)} = W^{(1)} x + b^{(1)}$", r["s1"]),
        ("forward", r"$h = \tanh s^{(1)}$", r["h"]),
        ("forward", r"$\hat y = W^{(2)} h + b^{(2)}$", r["out"]),
        ("forward", r"$\mathcal{L} = \tfrac12(\hat y - y)^2$", r["loss"]),
        ("backward", r"$\delta^{(2)} = \hat y - y$", r["delta2"]),
        ("backward", r"$\delta^{(1)} = (1 - h^2) \odot W^{(2)\top} \delta^{(2)}$", r["delta1"]),
        ("gradient", r"$\partial\mathcal{L}/\partial W^{(2)} = \delta^{(2)} h^\top$", r["gW2"]),
        ("gradient", r"$\partial\mathcal{L}/\partial b^{(2)} = \delta^{(2)}$", r["gb2"]),
        ("gradient", r"$\partial\mathcal{L}/\partial W^{(1)} = \delta^{(1)} x^\top$ (row by row)", r["gW1"]),
        ("gradient", r"$\partial\mathcal{L}/\partial b^{(1)} = \delta^{(1)}$", r["gb1"]),
    ]
    return pd.DataFrame([(step, formula, fmt(v)) for step, formula, v in rows],
                        columns=["step", "quantity", "value"])


def worked_autograd_difference(values: dict = WORKED) -> float:
    """Largest absolute difference between the hand-computed and autograd gradients."""
    hand, auto = worked_by_hand(values), worked_by_autograd(values)
    return max(float(np.max(np.abs(np.asarray(hand[k]) - auto[k]))) for k in auto)


def _random_mlp(sizes: tuple[int, ...], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / n_in**0.5,
             0.1 * torch.randn(n_out, generator=g, dtype=torch.float64))
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def _forward(params, X: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(pre-activation, activation) per layer: tanh on hidden layers, identity at the output."""
    cache, A = [], X
    for i, (W, b) in enumerate(params):
        S = A @ W.T + b
        A = S if i == len(params) - 1 else torch.tanh(S)
        cache.append((S, A))
    return cache


def batched_backward(params, X: torch.Tensor, Y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The matrix form of backpropagation for a tanh MLP with a linear output and the mean
    loss ``1/(2B) sum ||out - y||^2`` over a batch of ``B`` rows.

    Rows of ``X`` are examples. With ``S = A_prev W^T + b`` per layer, the deltas form a
    ``B x n`` matrix ``D`` and ``dL/dW = D^T A_prev``, ``dL/db = D.sum(0)``; one step back is
    ``D_prev = theta'(S_prev) * (D W)``.

    Returns:
        ``[(dL/dW, dL/db), ...]`` per layer, first layer first.
    """
    cache = _forward(params, X)
    D = (cache[-1][1] - Y) / X.shape[0]
    grads = []
    for i in range(len(params) - 1, -1, -1):
        A_prev = X if i == 0 else cache[i - 1][1]
        grads.append((D.T @ A_prev, D.sum(0)))
        if i:
            D = (1 - cache[i - 1][1] ** 2) * (D @ params[i][0])
    return grads[::-1]


def _mlp_loss(params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((_forward(params, X)[-1][1] - Y) ** 2).sum() / X.shape[0]


def batched_check(sizes: tuple[int, ...] = (4, 8, 8, 3), batch: int = 16, seed: int = 0) -> float:
    """Largest relative difference between :func:`batched_backward` and autograd on a random
    tanh MLP and batch (float64)."""
    params = _random_mlp(sizes, seed)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(batch, sizes[0], generator=g, dtype=torch.float64)
    Y = torch.randn(batch, sizes[-1], generator=g, dtype=torch.float64)
    leaves = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in params]
    _mlp_loss(leaves, X, Y).backward()
    worst = 0.0
    for (gW, gb), (W, b) in zip(batched_backward(params, X, Y), leaves):
        for mine, ref in ((gW, W.grad), (gb, b.grad)):
            worst = max(worst, float((mine - ref).abs().max() / ref.abs().max()))
    return worst


def softmax_cross_entropy_check(classes: int = 5, batch: int = 8, seed: int = 0) -> float:
    """Largest absolute difference between ``softmax(z) - onehot(y)`` and autograd's
    gradient of the cross-entropy of one example with respect to its logits ``z``
    (float64, per example: the loss is summed, not averaged)."""
    g = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.randint(classes, (batch,), generator=g)
    F.cross_entropy(z, y, reduction="sum").backward()
    formula = torch.softmax(z.detach(), dim=1) - F.one_hot(y, classes).double()
    return float((formula - z.grad).abs().max())


def gradient_check(sizes: tuple[int, ...] = (3, 5, 4, 2), batch: int = 6, h: float = 1e-6,
                   seed: int = 0, dtype: torch.dtype = torch.float64,
                   realised_step: bool = False) -> dict[str, float]:
    """Central-difference check of :func:`batched_backward` on every parameter of a small
    tanh MLP.

    Each parameter ``w`` is nudged to ``w +- h`` and ``(L(w+h) - L(w-h)) / 2h`` is compared
    with the backpropagated derivative. With ``realised_step`` the quotient divides instead by
    the step actually stored, ``fl(w+h) - fl(w-h)``, which in float32 differs from ``2h``
    because the perturbed weight is rounded too.

    Returns:
        ``relative_error`` = ``||g_fd - g_bp|| / (||g_fd|| + ||g_bp||)`` over all parameters,
        ``parameters`` (how many were checked) and ``h``.
    """
    params = [(W.to(dtype), b.to(dtype)) for W, b in _random_mlp(sizes, seed)]
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(batch, sizes[0], generator=g, dtype=torch.float64).to(dtype)
    Y = torch.randn(batch, sizes[-1], generator=g, dtype=torch.float64).to(dtype)
    backprop = torch.cat([t.reshape(-1) for pair in batched_backward(params, X, Y) for t in pair])
    numeric = []
    for pair in params:
        for t in pair:
            flat = t.view(-1)
            for i in range(flat.numel()):
                keep = flat[i].item()
                flat[i] = keep + h
                up, w_up = _mlp_loss(params, X, Y).item(), flat[i].item()
                flat[i] = keep - h
                down, w_down = _mlp_loss(params, X, Y).item(), flat[i].item()
                flat[i] = keep
                numeric.append((up - down) / ((w_up - w_down) if realised_step else 2 * h))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    backprop = backprop.double()
    error = (numeric - backprop).norm() / (numeric.norm() + backprop.norm())
    return {"relative_error": float(error), "parameters": int(numeric.numel()), "h": h}


def kink_check(s0: float, h: float = 1e-6, seed: int = 0) -> dict[str, float]:
    """A central difference across ReLU's kink: where it agrees with backprop and where not.

    A 3-4-1 ReLU network (float64) on one input is shifted so that its first hidden unit's
    pre-activation is exactly ``s0``; the derivative of the squared loss with respect to
    that unit's bias is then computed by autograd (ReLU'(s) = 1 for s > 0, 0 otherwise) and
    by the central difference with step ``h``. When ``|s0| < h`` the two nudged losses lie on
    different sides of the kink and the difference quotient averages the two one-sided
    slopes; otherwise the two agree to rounding.

    Returns:
        ``backprop``, ``central`` (the two derivatives), ``relative_error``
        (``|c - b| / (|c| + |b|)``, 0 when both are 0), ``s0`` and ``h``.
    """
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    W2 = torch.randn(1, 4, generator=g, dtype=torch.float64)
    x = torch.randn(3, generator=g, dtype=torch.float64)
    b1 = torch.zeros(4, dtype=torch.float64)
    b1[0] = s0 - float(W1[0] @ x)  # unit 0's pre-activation is s0
    b1[1:] = 0.5  # the other units active, so the output depends on the inputs

    def loss(bias: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((W2 @ torch.relu(W1 @ x + bias)) - 1.0).pow(2).sum()

    b = b1.clone().requires_grad_()
    loss(b).backward()
    up, down = b1.clone(), b1.clone()
    up[0] += h
    down[0] -= h
    central = float((loss(up) - loss(down)) / (2 * h))
    backprop = float(b.grad[0])
    scale = abs(central) + abs(backprop)
    error = abs(central - backprop) / scale if scale else 0.0  # both exactly 0: they agree
    return {"backprop": backprop, "central": central, "relative_error": error, "s0": s0, "h": h}
