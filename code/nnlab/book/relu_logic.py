"""Boolean functions with ReLU units: OR without a hidden unit, XOR with two.

A network here is a list of layers ``(W, b)``, ``W`` of shape ``(n_in, n_out)``; every
unit, the output included, computes ``relu(w . x + b)``. The problem's definitions, on
the four inputs ``x1, x2 in {0, 1}``:

* ``f`` computes OR if ``f(0, 0) = 0`` and ``f >= 1`` on the other three inputs;
* ``f`` computes XOR if ``f(0, 0) = f(1, 1) = 0`` and ``f(1, 0), f(0, 1) >= 1``;
* in the same way, ``f`` computes AND if it is 0 except ``f(1, 1) >= 1``.

:func:`satisfies` checks these exactly (no tolerance); :func:`search_single_unit` and
:func:`train_relu_networks` give the numerical side of the proof that XOR needs a hidden
layer (Minsky & Papert, 1969).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from nnlab.plots import PALETTE, TEXT_WIDTH

INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = {"or": np.array([0, 1, 1, 1]), "and": np.array([0, 0, 0, 1]),
           "xor": np.array([0, 1, 1, 0])}

Layers = list[tuple[np.ndarray, np.ndarray]]


def or_network() -> Layers:
    """OR with no hidden unit: the output unit alone, ``relu(x1 + x2)``."""
    return [(np.array([[1.0], [1.0]]), np.array([0.0]))]


def xor_network() -> Layers:
    """XOR with one hidden layer of two units.

    ``h1 = relu(x1 - x2)`` and ``h2 = relu(x2 - x1)`` fire on (1, 0) and (0, 1) respectively;
    the output ``relu(h1 + h2)`` adds them.
    """
    hidden = (np.array([[1.0, -1.0], [-1.0, 1.0]]), np.array([0.0, 0.0]))
    output = (np.array([[1.0], [1.0]]), np.array([0.0]))
    return [hidden, output]


def evaluate(layers: Layers, x: np.ndarray = INPUTS) -> np.ndarray:
    """The output of an all-ReLU network on each row of ``x`` (shape ``(N,)``)."""
    a = np.asarray(x, dtype=float)
    for w, b in layers:
        a = np.maximum(a @ w + b, 0.0)
    return a[:, 0]


def satisfies(function: str, outputs: np.ndarray) -> bool:
    """Whether outputs on :data:`INPUTS` meet the problem's definition, exactly.

    Args:
        function: ``or``, ``and`` or ``xor``.
        outputs: ``(4,)`` values on (0,0), (0,1), (1,0), (1,1).

    Returns:
        ``True`` if every 0 of the truth table is exactly 0 and every 1 is at least 1.

    Raises:
        ValueError: for an unknown function name.
    """
    if function not in TARGETS:
        raise ValueError(f"unknown function {function!r}; choose one of {', '.join(TARGETS)}")
    target = TARGETS[function]
    out = np.asarray(outputs, dtype=float)
    return bool(np.all(out[target == 0] == 0) and np.all(out[target == 1] >= 1))


def search_single_unit(values: np.ndarray | None = None) -> dict[str, int]:
    """Try every ``relu(w1 x1 + w2 x2 + b)`` with ``w1, w2, b`` on a grid.

    Args:
        values: grid of values for each of ``w1``, ``w2``, ``b`` (default: 121 values
            from -3 to 3, step 0.05).

    Returns:
        ``tried`` (grid size), and for each function of :data:`TARGETS` the number of grid
        points whose unit computes it.
    """
    values = np.linspace(-3, 3, 121) if values is None else np.asarray(values, dtype=float)
    w1, w2, b = np.meshgrid(values, values, values, indexing="ij")
    params = np.stack([w1.ravel(), w2.ravel(), b.ravel()], 1)
    out = np.maximum(params[:, :2] @ INPUTS.T + params[:, 2:], 0.0)  # (G, 4)
    counts = {"tried": int(len(params))}
    for name, target in TARGETS.items():
        ok = np.all(out[:, target == 0] == 0, 1) & np.all(out[:, target == 1] >= 1, 1)
        counts[name] = int(ok.sum())
    return counts


def train_relu_networks(hidden: Sequence[int], function: str = "xor",
                        seeds: Sequence[int] = tuple(range(50)), steps: int = 3000,
                        lr: float = 0.02, init: str = "playground") -> dict[str, np.ndarray]:
    """Train all-ReLU networks on the four points and check the definition exactly.

    The loss is zero exactly when the network meets the definition:
    ``sum over target-1 points of relu(1 - f)**2 + sum over target-0 points of f**2``
    (``f >= 0`` always, because the output is a ReLU). Adam takes ``steps`` full-batch
    steps; all seeds train at once (batched matrices).

    Args:
        hidden: hidden widths (empty: the output unit sees the inputs).
        function: ``or``, ``and`` or ``xor``.
        seeds: one network per seed.
        steps: Adam steps.
        lr: Adam learning rate.
        init: ``playground`` (weights uniform in [-0.5, 0.5), biases 0.1) or ``torch``
            (``nn.Linear``'s default, uniform in +-1/sqrt(fan_in) for weights and biases).

    Returns:
        ``final_loss`` ``(S,)``, ``outputs`` ``(S, 4)``, ``success`` ``(S,)`` (exact check
        by :func:`satisfies`), ``correct_signs`` ``(S,)`` (inputs on the right side of 0.5),
        ``final_grad_max`` ``(S,)`` (largest absolute gradient entry at the end), and the
        trained ``weights`` and ``biases`` (one ``(S, ...)`` array per layer).
    """
    n = len(seeds)
    weights, biases = _initial(hidden, seeds, init)
    for p in weights + biases:
        p.requires_grad_()
    x = torch.from_numpy(INPUTS)
    target = torch.from_numpy(TARGETS[function]).to(torch.float64)

    def net() -> torch.Tensor:
        a = x.expand(n, 4, 2)
        for w, b in zip(weights, biases):
            a = torch.relu(a @ w + b[:, None, :])
        return a[..., 0]

    def losses(f: torch.Tensor) -> torch.Tensor:
        return torch.where(target > 0, torch.relu(1 - f) ** 2, f ** 2).sum(-1)

    opt = torch.optim.Adam(weights + biases, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        losses(net()).sum().backward()
        opt.step()
    opt.zero_grad()
    f = net()
    per_run = losses(f)
    per_run.sum().backward()  # runs are independent: each run's gradient is its own loss's
    grad_max = torch.stack([p.grad.abs().flatten(1).max(1).values
                            for p in weights + biases]).max(0).values.numpy()
    final = per_run.detach().numpy()
    outputs = f.detach().numpy()
    success = np.array([satisfies(function, o) for o in outputs])
    signs = ((outputs > 0.5) == (TARGETS[function] > 0)).sum(1)
    return {"final_loss": final, "outputs": outputs, "success": success, "correct_signs": signs,
            "final_grad_max": grad_max,
            "weights": [w.detach().numpy() for w in weights],
            "biases": [b.detach().numpy() for b in biases]}


def _initial(hidden: Sequence[int], seeds: Sequence[int],
             init: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The starting weights and biases of :func:`train_relu_networks`, one ``(S, ...)`` tensor
    per layer."""
    sizes = [2, *hidden, 1]
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        ws, bs = [], []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s) * 1000 + len(weights))
            w = torch.rand(n_in, n_out, generator=g, dtype=torch.float64)
            b = torch.rand(n_out, generator=g, dtype=torch.float64)
            if init == "playground":
                ws.append(w - 0.5)
                bs.append(torch.full_like(b, 0.1))
            elif init == "torch":
                bound = 1 / np.sqrt(n_in)
                ws.append((w * 2 - 1) * bound)
                bs.append((b * 2 - 1) * bound)
            else:
                raise ValueError(f"unknown init {init!r}; choose 'playground' or 'torch'")
        weights.append(torch.stack(ws))
        biases.append(torch.stack(bs))
    return weights, biases


def initial_network(hidden: Sequence[int], seed: int, init: str = "playground") -> Layers:
    """The network that :func:`train_relu_networks` starts from for one seed."""
    weights, biases = _initial(hidden, (seed,), init)
    return [(w[0].numpy(), b[0].numpy()) for w, b in zip(weights, biases)]


def trained_network(result: dict[str, np.ndarray], run: int) -> Layers:
    """The layers of one run of :func:`train_relu_networks`."""
    return [(w[run].copy(), b[run].copy()) for w, b in zip(result["weights"], result["biases"])]


def has_dead_unit(layers: Layers, x: np.ndarray = INPUTS) -> bool:
    """Whether some unit (hidden or output) has pre-activation <= 0 on every row of ``x``.

    Such a unit outputs 0 and passes no gradient back on these inputs. In the first layer
    its inputs never change, so it stays dead; a dead output unit blocks every gradient, so
    the whole network stays as it is.
    """
    a = np.asarray(x, dtype=float)
    for w, b in layers:
        s = a @ w + b
        if np.any(np.all(s <= 0, axis=0)):
            return True
        a = np.maximum(s, 0.0)
    return False


def draw_network(layers: Layers, title: str = "", input_names: Sequence[str] = ("$x_1$", "$x_2$")):
    """A diagram of an all-ReLU network: units as circles, weights on the edges, biases inside.

    Args:
        layers: the network.
        title: figure title.
        input_names: labels of the input nodes.

    Returns:
        The figure.
    """
    sizes = [layers[0][0].shape[0]] + [w.shape[1] for w, _ in layers]
    fig, ax = plt.subplots(figsize=(min(TEXT_WIDTH, 1.9 * len(sizes) + 0.6), 2.7))
    pos = {}
    for li, n in enumerate(sizes):
        for j in range(n):
            pos[li, j] = (li * 2.0, (n - 1) / 2 - j)
    for li, (w, _) in enumerate(layers):
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                (x0, y0), (x1, y1) = pos[li, i], pos[li + 1, j]
                colour = PALETTE[0] if w[i, j] >= 0 else PALETTE[3]
                ax.plot([x0, x1], [y0, y1], color=colour, lw=1.8, zorder=1)
                t = 0.3 if w.shape[1] > 1 and j != i else 0.45
                ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0) + 0.09, f"{w[i, j]:+.3g}", fontsize=10,
                        ha="center", va="bottom", color=colour,
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none"))
    for (li, j), (x, y) in pos.items():
        is_input = li == 0
        ax.add_patch(plt.Circle((x, y), 0.36, fc="#f2f2f2" if is_input else "white",
                                ec="black", lw=1.2, zorder=2))
        if is_input:
            text = input_names[j]
        else:
            kind = "out" if li == len(sizes) - 1 else f"h{j + 1}"
            text = f"{kind}\nb={layers[li - 1][1][j]:.2g}"
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=3)
    ax.set_xlim(-0.6, 2.0 * (len(sizes) - 1) + 0.6)
    ax.set_ylim(-max(sizes) / 2 - 0.1, max(sizes) / 2 + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def plot_regions(panels: Sequence[tuple[str, Layers]], span: tuple[float, float] = (-0.5, 1.5),
                 resolution: int = 201):
    """What networks compute between the four corners: output heatmaps with the inputs marked.

    White is output 0; the orange line is the level ``f = 1``.

    Args:
        panels: ``(title, layers)`` pairs.
        span: the plotted range of both inputs.
        resolution: grid points per axis.

    Returns:
        The figure.
    """
    ticks = np.linspace(*span, resolution)
    gx, gy = np.meshgrid(ticks, ticks[::-1])
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(TEXT_WIDTH, 3.0), squeeze=False, sharey=True,
                             layout="constrained")
    im = None
    for ax, (title, layers) in zip(axes[0], panels):
        out = evaluate(layers, grid).reshape(resolution, resolution)
        im = ax.imshow(np.minimum(out, 2), cmap="Blues", vmin=0, vmax=2,
                       extent=(*span, *span))
        ax.contour(out[::-1], levels=[1.0], colors=PALETTE[1], linewidths=1.5, extent=(*span, *span))
        vals = evaluate(layers)
        for (x1, x2), v in zip(INPUTS, vals):
            ax.scatter([x1], [x2], s=60, c="white", edgecolors="black", zorder=3)
            ax.annotate(f"f = {v:g}", (x1, x2), textcoords="offset points", xytext=(6, 6), fontsize=9)
        ax.set_xlabel("$x_1$")
        ax.set_title(title)
        ax.grid(False)
    axes[0][0].set_ylabel("$x_2$")
    fig.colorbar(im, ax=list(axes[0]), label="network output (clipped at 2)", shrink=0.85)
    return fig
