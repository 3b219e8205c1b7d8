"""One figure style for the whole book: readable fonts, a colour-blind-safe palette.

The palette is Okabe & Ito's (2008) eight colours, distinguishable under the common forms
of colour blindness. Every function returns a matplotlib ``Figure``; chapters show it with
a caption and alt text.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt  # importing nnlab never changes the user's backend
import numpy as np
import torch


def _jupyter_kernel():
    """The running IPython kernel's shell, or None outside a notebook kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and "ipykernel" in type(shell).__module__ else None

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"

#: Dots per inch of every figure the book draws.
DPI = 110
#: Width of the book's figures, in inches: the built site gives a figure 672 px at a 1280 px
#: window (measured in the page), and ``TEXT_WIDTH * DPI`` = 660 px leaves room for the few
#: pixels that saving with ``bbox_inches="tight"`` may add. A figure this wide is shown at its
#: drawn size, so its text appears at the font size set here (9-10.5 pt, 14-16 px on screen).
TEXT_WIDTH = 6.0
#: Height of one panel of a multi-panel figure (:func:`panel_grid`), in inches.
PANEL_HEIGHT = 2.5

#: Readers' names of the data splits.
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
#: Readers' names of the metrics stored in training histories.
METRIC_LABELS = {"train_loss": "training loss", "val_loss": "validation loss", "test_loss": "test loss",
                 "train_acc": "training accuracy", "val_acc": "validation accuracy",
                 "test_acc": "test accuracy"}
#: Readers' names of the metrics of the tasks (:mod:`nnlab.tasks`), as stored after ``val_``
#: or ``test_``: the y-axis label of a curve of that metric.
METRIC_NAMES = {"acc": "accuracy", "loss": "loss", "rmse": "RMSE", "r2": "R²"}


def metric_label(key: str) -> str:
    """A reader's name for a stored metric, e.g. ``val_rmse`` -> ``validation RMSE``."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    split, _, metric = key.partition("_")
    if split in SPLIT_NAMES and metric:
        return f"{SPLIT_NAMES[split]} {METRIC_NAMES.get(metric, metric.replace('_', ' '))}"
    return key.replace("_", " ")


def use_style() -> None:
    """Apply the book's matplotlib style (call once per chapter).

    In a notebook kernel it also makes figures reach the notebook's outputs inline, even
    when the environment names a headless backend (``MPLBACKEND=Agg``, as the Makefile sets
    for tests and benchmarks). Importing :mod:`nnlab.plots` changes nothing: a lecture's
    own backend (``TkAgg``, ``widget``, ...) stays in force unless this is called. Figures
    are laid out by matplotlib's constrained layout and shown inline at their own size, not
    cropped (``bbox_inches=None``): text placed outside the figure is cut off, not kept.
    """
    shell = _jupyter_kernel()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
        # constrained layout (below) already fits every figure to its canvas; the inline
        # backend's default bbox_inches="tight" would draw each figure twice to crop it
        shell.run_line_magic("config", "InlineBackend.print_figure_kwargs = {'bbox_inches': None}")
    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (TEXT_WIDTH, 3.6),
        "font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "legend.fontsize": 9,
        "legend.title_fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "image.cmap": SEQUENTIAL,
        "figure.constrained_layout.use": True,
    })


def panel_grid(n: int, cols: int = 2, panel_height: float = PANEL_HEIGHT, width: float = TEXT_WIDTH,
               **subplots_kw):
    """A figure of ``n`` panels, ``cols`` to a row, as wide as the text column.

    Panels that do not fit in one row wrap into further rows rather than shrinking. The
    first unused cell of the last row, if there is one, is returned empty for a legend
    (:func:`legend`); any further ones are removed.

    Returns:
        ``(fig, axes, spare)``: the figure, a list of the ``n`` axes in reading order, and the
        spare axes or ``None``.
    """
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(width, panel_height * rows), squeeze=False,
                             layout="constrained", **subplots_kw)
    flat = list(grid.ravel())
    spare = flat[n] if len(flat) > n else None
    for ax in flat[n + 1:]:
        ax.remove()
    if spare is not None:
        spare.axis("off")
    return fig, flat[:n], spare


def legend(fig, axes: Sequence, spare=None, **kw) -> None:
    """One legend for a multi-panel figure: the handles of the first panel, in the spare
    cell of :func:`panel_grid` if there is one, else above the panels."""
    handles, labels = axes[0].get_legend_handles_labels()
    if spare is not None:
        spare.legend(handles, labels, loc="center", frameon=False, **kw)
    else:
        cols = len(labels) if len(labels) <= 4 else -(-len(labels) // 2)
        fig.legend(handles, labels, loc="outside upper center", ncols=cols, frameon=False, **kw)


def digit_grid(images: torch.Tensor, labels: Sequence[int], rows: int = 3, cols: int = 10,
               titles: Sequence[str] | None = None):
    """A grid of images with their labels: grey ``(N, H, W)`` or ``(N, 1, H, W)``, or colour
    ``(N, 3, H, W)`` (each image scaled to its own range). At most as wide as the text column."""
    images = torch.as_tensor(images).detach().cpu()
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    elif images.dim() == 4 and images.shape[1] == 3:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        images = ((images - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1)
    elif images.dim() != 3:
        raise ValueError(f"digit_grid shows (N, H, W), (N, 1, H, W) or (N, 3, H, W) images, got shape "
                         f"{tuple(images.shape)}")
    cell = min(0.75, TEXT_WIDTH / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, rows * (cell + 0.25)))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i].numpy(), cmap="gray_r" if images.dim() == 3 else None)
            ax.set_title(titles[i] if titles else str(int(labels[i])), fontsize=10)
    return fig


def curves(histories: dict[str, Sequence[dict]], keys: Sequence[str] = ("train_loss", "val_loss"),
           ylabel: str = "cross-entropy per sample", logy: bool = False):
    """Per-epoch curves, mean over runs with a min-max band, one colour per named model.

    One panel per key, two to a row; accuracies are drawn in percent. A loss panel's y axis
    is labelled ``ylabel`` (pass ``"mean squared error"`` for a regression); another metric's
    (``val_rmse``, ``val_r2``, ...) by its name. With more than one model the legend takes the
    spare cell of the grid, or sits above the panels.
    """
    fig, axes, spare = panel_grid(len(keys))
    for ax, key in zip(axes, keys):
        scale = 100 if key.endswith("_acc") else 1
        for colour, (name, runs) in zip(PALETTE, histories.items()):
            arr = scale * np.array([r[key] for r in runs])
            ep = np.arange(1, arr.shape[1] + 1)
            ax.plot(ep, arr.mean(0), color=colour, label=name)
            if len(arr) > 1:
                ax.fill_between(ep, arr.min(0), arr.max(0), color=colour, alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        metric = key.partition("_")[2]
        named = metric in METRIC_NAMES and metric != "loss"  # RMSE, R²: labelled by name, not ylabel
        ax.set_ylabel("accuracy (%)" if scale == 100 else METRIC_NAMES[metric] if named else ylabel)
        ax.set_title(metric_label(key))
        if logy:
            ax.set_yscale("log")
    if len(histories) > 1:
        legend(fig, axes, spare)
    return fig


def confusion(matrix: np.ndarray, labels: Sequence[str] = tuple("0123456789")):
    """A confusion matrix with counts written in the off-diagonal cells that are non-zero."""
    fig, ax = plt.subplots(figsize=(min(5.2, TEXT_WIDTH), 4.6))
    off = matrix.copy().astype(float)
    np.fill_diagonal(off, np.nan)
    im = ax.imshow(off, cmap="Oranges")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j] and i != j:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="misclassified test images")
    return fig


def class_balance(counts: dict[str, Sequence[int]]):
    """Share of each digit per split (grouped bars), with the uniform 10% marked."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 3.4))
    n = len(counts)
    width = 0.8 / n
    for i, (colour, (split, c)) in enumerate(zip(PALETTE, counts.items())):
        c = np.asarray(c, dtype=float)
        ax.bar(np.arange(10) + (i - (n - 1) / 2) * width, 100 * c / c.sum(), width, color=colour,
               label=f"{SPLIT_NAMES.get(split, split)} ({int(c.sum()):,} images)")
    ax.axhline(10, color="black", lw=1, ls="--", label="uniform (10%)")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("share of split (%)")
    ax.set_ylim(8, 12)
    ax.legend(ncol=2, fontsize=9, loc="upper right")
    return fig


def pixel_histogram(raw: torch.Tensor, normalised: torch.Tensor):
    """Histograms of pixel values before (0-255) and after normalisation (log counts)."""
    fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.9), layout="constrained")
    axes[0].hist(raw.flatten().numpy(), bins=64, color=PALETTE[0])
    axes[0].set_xlabel("raw pixel value\n(0 = background, 255 = full ink)")
    axes[1].hist(normalised.flatten().numpy(), bins=64, color=PALETTE[1])
    axes[1].set_xlabel("normalised pixel value\n(training mean 0, s.d. 1)")
    for ax in axes:
        ax.set_yscale("log")
    axes[0].set_ylabel("pixels (log scale)")
    return fig
