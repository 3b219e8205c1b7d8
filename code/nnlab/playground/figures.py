"""Figures of Part I: decision boundaries, units, losses, gradients, dead units, sliders.

Colours follow Playground: orange for -1, white for 0, blue for +1 (:data:`LABEL_CMAP`).

The figures that draw the plane show the data's
:attr:`~nnlab.playground.data.Dataset.extent`: Playground's ``[-6, 6]`` square for the
generated data, a square around the points for :meth:`~nnlab.playground.data.Dataset.from_arrays`
data. Their ``extent`` argument overrides it (a half-width or ``(x1_min, x1_max, x2_min,
x2_max)``); without data or ``extent`` they show Playground's square.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LinearSegmentedColormap

from nnlab.playground.data import PLAYGROUND_EXTENT, Dataset, Extent, as_extent
from nnlab.playground.network import (
    Params,
    activate,
    activation_derivative,
    forward,
    predict,
    select_run,
)
from nnlab.playground.studies import ORDERS, DyingReluResult
from nnlab.playground.training import History
from nnlab.plots import PALETTE, TEXT_WIDTH, legend, panel_grid

# -1 orange, 0 white, +1 blue: Playground's colours, taken from the book's palette
LABEL_CMAP = LinearSegmentedColormap.from_list("nnlab_labels", [PALETTE[1], "#ffffff", PALETTE[0]])


def _extent(extent: float | Sequence[float] | None, data: Dataset | None) -> Extent:
    """The plane to draw: ``extent`` if given, else the data's, else Playground's square."""
    if extent is not None:
        return as_extent(extent)
    return data.extent if data is not None else PLAYGROUND_EXTENT


def _plane(resolution: int, extent: Extent) -> np.ndarray:
    """``resolution**2`` points on a grid over ``extent``, row by row from the top left."""
    x1_min, x1_max, x2_min, x2_max = extent
    gx, gy = np.meshgrid(np.linspace(x1_min, x1_max, resolution),
                         np.linspace(x2_min, x2_max, resolution)[::-1])
    return np.stack([gx.ravel(), gy.ravel()], 1)


def _draw_boundary(ax, params: Params, activation: str, data: Dataset | None, run: int,
                   resolution: int, title: str | None, show_test: bool, marker_size: float,
                   ext: Extent):
    grid = _plane(resolution, ext)
    out = predict(select_run(params, run), grid, activation)[0].reshape(resolution, resolution)
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
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
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
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 3.0))
    for colour, name in zip(PALETTE, activations):
        d = activation_derivative(name, s, activate(name, s))
        ax.plot(s, d, color=colour, label=name)
    ax.axhline(0.25, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("pre-activation $s$")
    ax.set_ylabel("derivative $\\theta'(s)$")
    ax.legend()
    return fig


def plot_boundaries(panels: Sequence[tuple], data: Dataset | None, activation: str = "relu",
                    run: int = 0, resolution: int = 121, show_test: bool = False,
                    extent: float | Sequence[float] | None = None):
    """Decision-boundary heatmaps: the network output over the plane.

    Up to two panels stand side by side; more wrap into rows of two, with the colour bar in
    the spare cell. The colour is the output in [-1, 1] (orange -1, blue +1), the black line the boundary
    ``out = 0``; dots are the training points coloured by label.

    Args:
        panels: ``(title, params)`` or ``(title, params, activation)`` tuples.
        data: points to draw (or ``None``).
        activation: the hidden activation of panels that do not name one.
        run: which run of each parameter list.
        resolution: grid points per axis.
        show_test: also draw the test points (black edge).
        extent: the plane shown (default: the data's, see the module's note).

    Returns:
        The figure.
    """
    ext = _extent(extent, data)
    n = len(panels)
    fig, axes, spare = panel_grid(n, cols=2, panel_height=3.0 if n <= 2 else 2.9)
    im = None
    for ax, panel in zip(axes, panels):
        title, params = panel[0], panel[1]
        act = panel[2] if len(panel) > 2 else activation
        im = _draw_boundary(ax, params, act, data, run, resolution, title, show_test, 12, ext)
    if spare is not None:
        fig.colorbar(im, cax=spare.inset_axes([0.15, 0.12, 0.07, 0.76]), label="network output")
    else:
        fig.colorbar(im, ax=axes, label="network output", shrink=0.85)
    return fig


def plot_neurons(params: Params, activation: str, run: int = 0, resolution: int = 61, *,
                 data: Dataset | None = None, extent: float | Sequence[float] | None = None):
    """One small heatmap per unit: what each hidden unit and the output compute on the plane.

    Colours as :func:`plot_boundaries`, clipped to [-1, 1] (as Playground does).

    Args:
        params: the parameter list.
        activation: the hidden activation.
        run: which run.
        resolution: grid points per axis.
        data: the data the network was trained on; only its extent is used (the points
            are not drawn).
        extent: the plane shown (default: the data's, see the module's note).

    Returns:
        The figure (one row per layer, inputs side first). Each row is labelled on its left
        (``layer 1``, ..., ``output``) and each panel by its unit's number; wide layers get
        shorter titles and a smaller font, so that titles never overlap.
    """
    ext = _extent(extent, data)
    grid = _plane(resolution, ext)
    _, act = forward(select_run(params, run), grid, activation)
    layers = act[1:]
    cols = max(a.shape[-1] for a in layers)
    width = min(TEXT_WIDTH, 1.45 * cols + 0.6)
    panel = (width - 0.6) / cols  # inches per panel
    fontsize = 9 if panel >= 0.9 else 8 if panel >= 0.6 else 7
    short = panel < 0.9  # "3" instead of "unit 3"
    fig, axes = plt.subplots(len(layers), cols, squeeze=False, layout="constrained",
                             figsize=(width, max(1.0, min(1.5, panel + 0.45)) * len(layers) + 0.2))
    for li, a in enumerate(layers):
        last = li == len(layers) - 1
        for j in range(cols):
            ax = axes[li][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j >= a.shape[-1]:
                ax.axis("off")
                continue
            ax.imshow(a[0, :, j].reshape(resolution, resolution), cmap=LABEL_CMAP, vmin=-1, vmax=1,
                      extent=ext)
            if j == 0:
                ax.set_ylabel("output" if last else f"layer {li + 1}", fontsize=fontsize)
            if not last:
                ax.set_title(f"{j + 1}" if short else f"unit {j + 1}", fontsize=fontsize)
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
    fig, axes, _ = panel_grid(2, panel_height=2.8, sharey=True)
    for ax, (key, title) in zip(axes, (("train_loss", "training loss"), ("test_loss", "test loss"))):
        for colour, (name, h) in zip(PALETTE, histories.items()):
            curve = getattr(h, key)
            _band(ax, np.arange(curve.shape[1]), curve, colour, name)
        ax.set_xlabel("iteration\n(passes over the training points)")
        ax.set_title(title)
        if logy:
            ax.set_yscale("log")
    axes[0].set_ylabel("loss, mean of ½(out − y)²")
    if len(histories) > 1:
        legend(fig, axes)
    return fig


def plot_grad_norms(histories: dict[str, History], logx: bool = False):
    """Per-layer gradient norms ``||dL/dW_l||`` over training, one panel per history.

    Panels stand two to a row, the legend in the spare cell when there is one. Median over runs (line) and min-max band; ``L`` is the mean loss on the training points.

    Args:
        histories: named histories.
        logx: logarithmic iteration axis (iteration 0 is dropped).

    Returns:
        The figure.
    """
    n = len(histories)
    fig, axes, spare = panel_grid(n, panel_height=3.0 if n == 1 else 2.6, sharey=True)
    for ax, (name, h) in zip(axes, histories.items()):
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
    for ax in axes[::2]:
        ax.set_ylabel("gradient norm ‖∂L/∂W‖")
    if spare is not None:
        legend(fig, axes, spare)
    else:
        axes[0].legend()
    return fig


def boundary_frames(history: History, data: Dataset, iterations: Sequence[int] | None = None,
                    run: int = 0, resolution: int = 61, size_in: float = 3.0,
                    dpi: int = 100, extent: float | Sequence[float] | None = None,
                    ) -> tuple[list[bytes], list[str]]:
    """Small PNG frames of the decision boundary at stored snapshots.

    Args:
        history: a history with ``snapshots`` at the wanted iterations.
        data: the points to draw.
        iterations: which snapshots (default: all, in order).
        run: which run.
        resolution: grid points per axis.
        size_in: frame width and height in inches.
        dpi: dots per inch (``size_in * dpi`` pixels wide).
        extent: the plane shown (default: the data's, see the module's note).

    Returns:
        ``(frames, labels)``: PNG bytes and one label per frame.

    Raises:
        KeyError: for an iteration without a snapshot.
    """
    iterations = sorted(history.snapshots) if iterations is None else list(iterations)
    ext = _extent(extent, data)
    frames, labels = [], []
    fig, ax = plt.subplots(figsize=(size_in, size_in), dpi=dpi)
    try:
        for i, t in enumerate(iterations):
            ax.clear()
            _draw_boundary(ax, history.snapshots[t], history.config.activation, data, run, resolution, None,
                           False, 6, ext)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(labelsize=8)
            if i == 1:  # every frame has the first one's layout: lay out once, not once per frame
                fig.set_layout_engine("none")
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi)
            frames.append(buf.getvalue())
            labels.append(f"iteration {t}: test loss {history.test_loss[run, t]:.3f}")
    finally:
        plt.close(fig)
    return frames, labels


def boundary_slider(history: History, data: Dataset, iterations: Sequence[int] | None = None,
                    run: int = 0, caption: str = "",
                    extent: float | Sequence[float] | None = None):
    """An HTML slider that scrubs the decision boundary through training (no kernel needed).

    Args:
        history: a history with snapshots.
        data: the points to draw.
        iterations: which snapshots (default: all).
        run: which run.
        caption: text shown under the slider.
        extent: the plane shown (default: the data's, see the module's note).

    Returns:
        The :class:`nnlab.widgets.SliderHTML` object.
    """
    from nnlab import widgets

    frames, labels = boundary_frames(history, data, iterations, run, extent=extent)
    alt = (f"Decision boundary of the {history.config.activation} network on the "
           f"{data.name} data; the slider selects the training iteration.")
    return widgets.slider(frames, labels, alt=alt, caption=caption)


def plot_dying_relu(result: DyingReluResult):
    """Dead units, test accuracy and output bias through training, grouped vs shuffled order.

    Lines are means over seeds; bands span the 10th to 90th percentile of the seeds.

    Args:
        result: from :func:`~nnlab.playground.studies.dying_relu_experiment`.

    Returns:
        The figure.
    """
    epochs = result.points_seen / 1000
    panels = [("dead_fraction", "hidden units dead (%)", 100), ("test_accuracy", "test accuracy (%)", 100),
              ("output_bias", "output bias", 1)]
    fig, axes, spare = panel_grid(len(panels))
    for ax, (key, label, scale) in zip(axes, panels):
        arr = scale * getattr(result, key)
        for o, (name, colour) in enumerate(zip(result.orders, (PALETTE[3], PALETTE[0]))):
            ax.plot(epochs, arr[o].mean(0), color=colour, label=name)
            lo, hi = np.percentile(arr[o], [10, 90], axis=0)
            ax.fill_between(epochs, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.set_xlabel("epochs (passes over the\n1000 points)")
        ax.set_ylabel(label)
    legend(fig, axes, spare, title="order")
    return fig


def plot_dying_grid(grid: dict[str, np.ndarray]):
    """Heatmaps of the final share of dead units (%) over widths and learning rates, one per order.

    Args:
        grid: from :func:`~nnlab.playground.studies.dying_relu_grid`.

    Returns:
        The figure.
    """
    dead = 100 * grid["dead_fraction"]
    fig, axes = plt.subplots(1, len(ORDERS), figsize=(TEXT_WIDTH, 3.0), layout="constrained")
    im = None
    for o, ax in enumerate(axes):
        im = ax.imshow(dead[:, :, o], cmap="Oranges", vmin=0, vmax=max(50, dead.max()),
                       origin="lower", aspect="auto")
        for i in range(dead.shape[0]):
            for j in range(dead.shape[1]):
                ax.text(j, i, f"{dead[i, j, o]:.1f}", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(dead.shape[1]), [f"{lr:g}" for lr in grid["learning_rates"]])
        ax.set_yticks(range(dead.shape[0]), [str(w) for w in grid["widths"]])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("units per hidden layer")
        ax.set_title(f"{ORDERS[o]} order")
        ax.grid(False)
    fig.colorbar(im, ax=list(axes), label="hidden units dead (%)")
    return fig
