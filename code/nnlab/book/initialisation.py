"""Signal propagation through deep plain networks at initialisation: per-layer activation
standard deviation and weight-gradient norm under different weight scales.

The networks are ``depth`` fully connected layers of equal ``width`` without biases, tanh or
ReLU after each, fed a batch of standard normal inputs. Everything runs in float64 on
fixed random draws (``torch.Generator``), so the measurements are deterministic up to the
last bits of the matrix products and take well under a second.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from nnlab import plots

#: Weight scales as gains ``g`` in ``Var(W) = g^2 / n`` for a square layer of width ``n``:
#: Glorot (Xavier) ``g = 1`` (``2 / (n_in + n_out)`` = ``1 / n``), He ``g = sqrt 2``.
SCALES = {"0.5 × Xavier": 0.5, "Xavier": 1.0, "He": math.sqrt(2), "2 × He": 2 * math.sqrt(2)}
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def signal_propagation(activation: str, gain: float, depth: int = 30, width: int = 256,
                       batch: int = 128, seed: int = 0) -> pd.DataFrame:
    """Forward and backward statistics of one plain network at initialisation.

    Weights are drawn ``N(0, gain^2 / width)``. The loss is ``sum(out * r)`` for a fixed
    standard normal ``r``, so the output's delta has unit scale whatever the network does.

    Returns:
        One row per layer ``1..depth``: ``activation_std`` (std of the layer's output over
        batch and units), ``delta_std`` (std of dL/ds, the backward signal at the layer's
        pre-activations) and ``grad_norm`` (Frobenius norm of dL/dW of that layer, divided
        by the batch size).
    """
    g = torch.Generator().manual_seed(seed)
    act = ACTIVATIONS[activation]
    x = torch.randn(batch, width, generator=g, dtype=torch.float64)
    weights = [(gain / math.sqrt(width) * torch.randn(width, width, generator=g, dtype=torch.float64))
               .requires_grad_() for _ in range(depth)]
    stds, pre, h = [], [], x
    for W in weights:
        s = h @ W.T
        s.retain_grad()
        pre.append(s)
        h = act(s)
        stds.append(float(h.detach().std()))
    r = torch.randn(batch, width, generator=g, dtype=torch.float64)
    (h * r).sum().backward()
    return pd.DataFrame({"layer": np.arange(1, depth + 1), "activation_std": stds,
                         "delta_std": [float(s.grad.std()) for s in pre],
                         "grad_norm": [float(W.grad.norm()) / batch for W in weights]})


def scale_study(depth: int = 30, width: int = 256, seed: int = 0) -> pd.DataFrame:
    """:func:`signal_propagation` for every activation and scale of :data:`SCALES`, stacked
    with ``activation`` and ``scale`` columns.

    Runs on one thread: these small products are several times faster without thread
    contention on a busy machine. The previous thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = [signal_propagation(activation, gain, depth, width, seed=seed)
                  .assign(activation=activation, scale=name)
                  for activation in ACTIVATIONS for name, gain in SCALES.items()]
    finally:
        torch.set_num_threads(threads)
    return pd.concat(frames, ignore_index=True)


def ratio(study: pd.DataFrame, activation: str, scale: str, column: str) -> float:
    """Last layer's value of ``column`` over the first layer's, for one network."""
    t = study[(study.activation == activation) & (study.scale == scale)].sort_values("layer")
    return float(t[column].iloc[-1] / t[column].iloc[0])


def spread(study: pd.DataFrame, activation: str, scale: str, column: str) -> float:
    """Largest over smallest value of ``column`` across the layers of one network."""
    t = study[(study.activation == activation) & (study.scale == scale)][column]
    return float(t.max() / t.min())


def gradient_table(study: pd.DataFrame, layers: tuple[int, ...] = (1, 15, 30)) -> pd.DataFrame:
    """The weight-gradient norm per example (``grad_norm``) at a few layers of every network
    of :func:`scale_study`, one row per activation and scale, with the largest over the
    smallest value across all layers of that network (:func:`spread`), formatted for reading."""
    rows = []
    for (activation, scale), t in study.groupby(["activation", "scale"], sort=False):
        norms = t.set_index("layer")["grad_norm"]
        row = {"activation": {"tanh": "tanh", "relu": "ReLU"}[activation], "weight scale": scale}
        row.update({f"layer {k}": f"{norms[k]:.2e}" for k in layers})
        ratio = spread(study, activation, scale, "grad_norm")
        row["largest / smallest over all layers"] = f"{ratio:.2f}" if ratio < 10 else f"{ratio:.2e}"
        rows.append(row)
    return pd.DataFrame(rows)


def predicted_relu_std_ratio(gain: float, layers: int) -> float:
    """The variance argument's prediction for ReLU: each layer multiplies the second moment
    by ``gain^2 / 2``, so after ``layers`` more layers the std changes by
    ``(gain^2 / 2) ** (layers / 2)``."""
    return (gain**2 / 2) ** (layers / 2)


def plot_scale_study(study: pd.DataFrame):
    """Four panels: activation std and backward-signal (delta) std per layer, tanh and ReLU, one
    line per weight scale (log scale)."""
    fig, axes, spare = plots.panel_grid(4, cols=2)
    panels = [(a, c) for c in ("activation_std", "delta_std") for a in ACTIVATIONS]
    labels = {"activation_std": "std of activations", "delta_std": "std of δ (backward)"}
    for ax, (activation, column) in zip(axes, panels):
        for name in SCALES:
            t = study[(study.activation == activation) & (study.scale == name)]
            ax.semilogy(t["layer"], t[column], label=name)
        ax.set_title(f"{ {'tanh': 'tanh', 'relu': 'ReLU'}[activation]}: {labels[column]}")
        ax.set_xlabel("layer")
    plots.legend(fig, axes, spare)
    return fig


def relu_seed_ratios(gain: float = 1.0, seeds: tuple[int, ...] = tuple(range(10)), depth: int = 30,
                     width: int = 256, batch: int = 128) -> np.ndarray:
    """Measured over predicted change of the activations' std from the first to the last layer
    of bias-free ReLU networks (the forward pass of :func:`signal_propagation`, same draws;
    :func:`predicted_relu_std_ratio`), one value per seed.

    Across the gains of :data:`SCALES` one seed gives one value: a bias-free ReLU network is
    positively homogeneous, so the networks of the four gains are one network rescaled and
    measured over predicted is the same for all. The finite-width scatter shows across seeds.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        with torch.no_grad():
            for seed in seeds:
                g = torch.Generator().manual_seed(seed)
                h = torch.randn(batch, width, generator=g, dtype=torch.float64)
                weights = [gain / math.sqrt(width) * torch.randn(width, width, generator=g, dtype=torch.float64)
                           for _ in range(depth)]
                stds = []
                for W in weights:
                    h = torch.relu(h @ W.T)
                    stds.append(float(h.std()))
                out.append(stds[-1] / stds[0] / predicted_relu_std_ratio(gain, depth - 1))
    finally:
        torch.set_num_threads(threads)
    return np.array(out)
