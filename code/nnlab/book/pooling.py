"""Pooling and invariance, measured (problems 3D-3F).

Three measurements: the problem's four 4x4 matrices pooled by PyTorch; how much the
feature maps of a fixed convolution change when a digit is shifted, noised or loses
pixels, with and without pooling after the convolution; and how the trained networks of
the ``pooling-ablation`` experiment hold up under the same perturbations.

Perturbations act on images with pixels in [0, 1] (background 0), the scale of the
MNIST files; :func:`to_network_scale` then normalises them as :mod:`nnlab.data` does.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from nnlab.data import normalisation, raw_split
from nnlab.plots import PALETTE, TEXT_WIDTH, legend, panel_grid

# Problems 3D/3E: a 3x3 block of ones in each corner of a 4x4 image.
PROBLEM_MATRICES = torch.tensor([
    [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]],
    [[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]],
    [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]],
    [[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0]],
], dtype=torch.float32)

POOLINGS = ("no pooling", "average 2×2", "max 2×2", "max 4×4", "global max")


def pool(images: torch.Tensor, kind: str, kernel: int = 2, stride: int | None = None) -> torch.Tensor:
    """Average or max pooling of ``(N, C, H, W)`` maps with PyTorch.

    Args:
        images: the input maps.
        kind: ``"average"`` or ``"max"``.
        kernel: window side length.
        stride: step between windows (default: ``kernel``, non-overlapping).

    Returns:
        The pooled maps.

    Raises:
        ValueError: unknown kind.
    """
    if kind == "average":
        return F.avg_pool2d(images, kernel, stride)
    if kind == "max":
        return F.max_pool2d(images, kernel, stride)
    raise ValueError(f"unknown pooling {kind!r}; choose 'average' or 'max'")


def pooled_problem_matrices() -> dict[str, torch.Tensor]:
    """The four matrices of problems 3D/3E and their 2x2, stride-2 average and max pools.

    Returns:
        ``{"input": (4, 4, 4), "average": (4, 2, 2), "max": (4, 2, 2)}``.
    """
    x = PROBLEM_MATRICES.unsqueeze(1)
    return {"input": PROBLEM_MATRICES, "average": pool(x, "average", 2)[:, 0], "max": pool(x, "max", 2)[:, 0]}


def distinct(maps: torch.Tensor) -> int:
    """Number of different maps in a stack ``(N, ...)``."""
    return len({tuple(m.flatten().tolist()) for m in maps})


def plot_pooled_matrices(pooled: dict[str, torch.Tensor]):
    """The input matrices and their pooled versions as annotated grids, one column per matrix.

    Args:
        pooled: the output of :func:`pooled_problem_matrices`.

    Returns:
        The matplotlib figure.
    """
    rows = list(pooled)
    n = pooled[rows[0]].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(TEXT_WIDTH, 1.45 * len(rows) + 0.3), layout="constrained")
    for r, name in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            m = pooled[name][c].numpy()
            ax.imshow(m, cmap="Blues", vmin=0, vmax=1.6)
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=11)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(f"matrix {c + 1}")
                for k in (1.5,):  # the 2x2 pooling windows
                    ax.axhline(k, color=PALETTE[3], lw=1.5)
                    ax.axvline(k, color=PALETTE[3], lw=1.5)
        axes[r, 0].set_ylabel(name if name == "input" else f"{name} pool")
    return fig


# ----------------------------------------------------------------------- perturbations

def shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate ``(N, C, H, W)`` images by whole pixels; pixels moved in are 0 (background)."""
    n, c, h, w = images.shape
    out = torch.zeros_like(images)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = images[..., ys, xs]
    return out


DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def shift_each(images: torch.Tensor, distance: int, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by ``distance`` pixels right, left, down or up (one drawn at random)."""
    pick = torch.randint(len(DIRECTIONS), (len(images),), generator=generator)
    out = torch.empty_like(images)
    for k, (dy, dx) in enumerate(DIRECTIONS):
        sel = pick == k
        out[sel] = shift(images[sel], dy * distance, dx * distance)
    return out


def add_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian pixel noise of standard deviation ``sigma``, clipped back to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator) * sigma
    return (images + noise).clamp(0, 1)


def drop_pixels(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Set a random ``fraction`` of all pixels to 0 (missing), independently per pixel."""
    keep = torch.rand(images.shape, generator=generator) >= fraction
    return images * keep


def rotate_each(images: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate every image about its centre by ``degrees``, clockwise or anticlockwise at random
    (bilinear interpolation; pixels moved in from outside are 0)."""
    sign = torch.randint(2, (len(images),), generator=generator).float() * 2 - 1
    angle = sign * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perturb(images: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """One perturbation of images in [0, 1].

    Args:
        images: ``(N, 1, H, W)`` in [0, 1].
        kind: ``"shift"`` (``level`` pixels, random axis direction per image), ``"rotate"``
            (``level`` degrees, random sense per image), ``"noise"`` (Gaussian, standard
            deviation ``level``) or ``"dropout"`` (fraction ``level`` of pixels set to 0).
        level: the strength; 0 returns the images unchanged.
        seed: seeds the random choices, so every model sees the same perturbed images.

    Returns:
        The perturbed images.

    Raises:
        ValueError: unknown kind.
    """
    gen = torch.Generator().manual_seed(seed)
    if kind == "shift":
        return shift_each(images, int(level), gen) if level else images
    if kind == "rotate":
        return rotate_each(images, float(level), gen) if level else images
    if kind == "noise":
        return add_noise(images, float(level), gen) if level else images
    if kind == "dropout":
        return drop_pixels(images, float(level), gen) if level else images
    raise ValueError(f"unknown perturbation {kind!r}; choose shift, rotate, noise or dropout")


def digit_subset(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of the MNIST test set: images ``(n, 1, 28, 28)`` in [0, 1] and labels."""
    images, labels = raw_split("test")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx].float().div(255).unsqueeze(1), labels[idx]


def to_network_scale(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the normalised scale the trained networks expect."""
    mean, std = normalisation()
    return (images - mean) / std


def plot_perturbations(image: torch.Tensor, settings: Sequence[tuple[str, float]], seed: int = 0):
    """One digit under several perturbations, four to a row.

    Args:
        image: ``(1, 1, 28, 28)`` in [0, 1].
        settings: ``(kind, level)`` pairs for :func:`perturb`.
        seed: seeds the perturbations.

    Returns:
        The matplotlib figure.
    """
    labels = {"shift": "shift {:g} px", "rotate": "rotated {:g}°", "noise": "noise σ={:g}",
              "dropout": "{:.0%} dropped"}
    cols = min(4, len(settings))
    rows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(TEXT_WIDTH, 1.5 * cols), 1.75 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[len(settings):]:
        ax.remove()
    for ax, (kind, level) in zip(axes.ravel(), settings):
        ax.imshow(perturb(image, kind, level, seed)[0, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title("original" if not level else labels[kind].format(level), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    return fig


# ------------------------------------------------------------- invariance of features

def fixed_conv(channels: int = 16, kernel: int = 5, seed: int = 0) -> nn.Conv2d:
    """A convolution with PyTorch's default random weights (seeded) and no bias.

    Without a bias an empty region gives exactly zero response, so the measured feature
    changes come from the digit, not from the background.
    """
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    layer = nn.Conv2d(1, channels, kernel, padding=kernel // 2, bias=False)
    torch.set_rng_state(state)
    return layer.requires_grad_(False)


def pooled_features(maps: torch.Tensor, pooling: str) -> torch.Tensor:
    """Flattened feature vectors after one of :data:`POOLINGS` applied to ``(N, C, H, W)``."""
    if pooling == "no pooling":
        out = maps
    elif pooling == "average 2×2":
        out = F.avg_pool2d(maps, 2)
    elif pooling == "max 2×2":
        out = F.max_pool2d(maps, 2)
    elif pooling == "max 4×4":
        out = F.max_pool2d(maps, 4)
    elif pooling == "global max":
        out = F.adaptive_max_pool2d(maps, 1)
    else:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    return out.flatten(1)


@torch.no_grad()
def feature_change(images: torch.Tensor, levels: dict[str, Sequence[float]],
                   layer: nn.Module | None = None, poolings: Sequence[str] = POOLINGS,
                   seed: int = 0, chunk: int = 100) -> pd.DataFrame:
    """How much a fixed conv layer's pooled features change under each perturbation.

    For each image ``x`` and perturbed image ``x'``, with ``f`` = ReLU(conv(.)) followed by a
    pooling: the relative change ``||f(x') - f(x)|| / ||f(x)||`` and the cosine similarity of
    ``f(x')`` and ``f(x)``, both compared position by position.

    Args:
        images: ``(N, 1, 28, 28)`` in [0, 1].
        levels: perturbation kind -> levels, e.g. ``{"shift": [0, 1, 2, 3]}``.
        layer: the convolution (default :func:`fixed_conv`).
        poolings: which of :data:`POOLINGS` to compare.
        seed: seeds the perturbations.
        chunk: images per forward pass (small chunks stay in the CPU's cache).

    Returns:
        One row per (perturbation, level, pooling): ``relative_change`` and ``cosine`` (means
        over images) and ``relative_change_std`` (their spread over images).
    """
    layer = fixed_conv() if layer is None else layer
    starts = range(0, len(images), chunk)
    base = []  # clean pooled features, per chunk and pooling
    for start in starts:
        clean = F.relu(layer(images[start:start + chunk]))
        base.append({p: pooled_features(clean, p) for p in poolings})
    rows = []
    for kind, values in levels.items():
        for level in values:
            moved = perturb(images, kind, level, seed)
            rel: dict[str, list[torch.Tensor]] = {p: [] for p in poolings}
            cos: dict[str, list[torch.Tensor]] = {p: [] for p in poolings}
            for start, clean_features in zip(starts, base):
                maps = F.relu(layer(moved[start:start + chunk])) if level else None
                for p in poolings:
                    f0 = clean_features[p]
                    f1 = pooled_features(maps, p) if maps is not None else f0
                    rel[p].append((f1 - f0).norm(dim=1) / f0.norm(dim=1).clamp_min(1e-12))
                    cos[p].append(F.cosine_similarity(f1, f0, dim=1))
            for p in poolings:
                r = torch.cat(rel[p])
                rows.append({"perturbation": kind, "level": level, "pooling": p,
                             "relative_change": float(r.mean()), "relative_change_std": float(r.std()),
                             "cosine": float(torch.cat(cos[p]).mean())})
    return pd.DataFrame(rows)


UNITS = {"shift": "shift (pixels)", "rotate": "rotation (degrees)",
         "noise": "noise standard deviation\n(pixel scale 0 to 1)", "dropout": "share of pixels set to 0"}


def _panels(n: int, sharey: bool):
    """A grid of ``n`` panels, two to a row, as wide as the text column."""
    fig, axes, _ = panel_grid(n, panel_height=2.5, sharey=sharey)
    return fig, axes, axes[::2]


def plot_feature_change(table: pd.DataFrame, metric: str = "relative_change"):
    """One panel per perturbation: the feature change against its strength, a line per pooling.

    Args:
        table: the output of :func:`feature_change`.
        metric: ``relative_change`` or ``cosine``.

    Returns:
        The matplotlib figure.
    """
    kinds = list(dict.fromkeys(table["perturbation"]))
    fig, axes, left = _panels(len(kinds), sharey=True)
    styles = dict(zip(POOLINGS, ["o-", "s--", "^-", "v-", "D:"]))
    for ax, kind in zip(axes, kinds):
        part = table[table["perturbation"] == kind]
        for colour, (p, rows) in zip(PALETTE, part.groupby("pooling", sort=False)):
            ax.plot(rows["level"], rows[metric], styles.get(p, "o-"), color=colour, label=p, ms=4)
        ax.set_xlabel(UNITS.get(kind, kind))
        ax.set_xticks(sorted(set(part["level"])))
    for ax in left:
        ax.set_ylabel("relative change of features" if metric == "relative_change"
                      else "cosine similarity to clean")
    legend(fig, axes)
    return fig


# ------------------------------------------------------------ trained networks

@torch.no_grad()
def accuracy_under(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, kind: str, level: float,
                   seed: int = 0, batch: int = 250) -> float:
    """Accuracy of ``model`` (expecting normalised input) on perturbed images in [0, 1]."""
    x = to_network_scale(perturb(images, kind, level, seed))
    model.eval()
    correct = 0
    for start in range(0, len(x), batch):
        correct += int((model(x[start:start + batch]).argmax(1) == labels[start:start + batch]).sum())
    return correct / len(x)


ROBUSTNESS_COLUMNS = ["variant", "seed", "perturbation", "level", "accuracy"]


def _evaluation_source_hash() -> str:
    """sha256 of the source of every function that determines :func:`robustness`'s numbers
    (as defined in this file, whatever a caller may have patched since)."""
    return hashlib.sha256("".join(inspect.getsource(f) for f in _EVALUATION).encode()).hexdigest()


def robustness(levels: dict[str, Sequence[float]], experiment: str = "pooling-ablation", n: int = 2000,
               seed: int = 0, cache: bool = True) -> pd.DataFrame:
    """Test accuracy of every stored model of an experiment under each perturbation.

    The evaluation takes about a minute on two busy CPU cores, so its table is cached in the
    experiment's results folder (``robustness.json``), keyed on everything that determines
    it: the experiment's config hash, the sha256 of every stored weights file, the
    arguments, and the source of the functions that perturb and evaluate. Any change to
    these recomputes it.

    Args:
        levels: perturbation kind -> levels (see :func:`perturb`).
        experiment: a registered experiment with stored weights.
        n: test images used (a fixed random subset; see :func:`digit_subset`).
        seed: seeds the subset and the perturbations (the same images for every model).
        cache: read and write the cache file.

    Returns:
        One row per (variant, seed, perturbation, level) with the ``accuracy``.
    """
    from nnlab import results as store
    from nnlab.book import experiments as E

    exp = E.get(experiment)
    stored = store.load(experiment)
    key = hashlib.sha256(json.dumps({
        "config_hash": exp.config_hash(), "levels": {k: [float(v) for v in vs] for k, vs in levels.items()},
        "n": n, "seed": seed, "source": _evaluation_source_hash(),
        "weights": sorted(r["weights"]["sha256"] for r in stored["runs"].values() if "weights" in r),
    }, sort_keys=True).encode()).hexdigest()[:16]
    path = store.experiment_dir(experiment) / "robustness.json"
    if cache and path.exists():
        try:
            cached = json.loads(path.read_text())
        except json.JSONDecodeError:
            cached = {}
        if cached.get("key") == key:
            return pd.DataFrame(cached["rows"], columns=ROBUSTNESS_COLUMNS)
    images, labels = digit_subset(n, seed)
    rows = []
    for variant in exp.variants:
        for s in exp.seeds:
            model = store.load_model(experiment, s, variant.name)
            clean = accuracy_under(model, images, labels, "shift", 0, seed)
            for kind, values in levels.items():
                for level in values:
                    acc = accuracy_under(model, images, labels, kind, level, seed) if level else clean
                    rows.append({"variant": variant.name, "seed": s, "perturbation": kind, "level": float(level),
                                 "accuracy": acc})
    if cache:
        store.atomic_write_json(path, {"key": key, "experiment": experiment, "n": n, "seed": seed,
                                       "rows": rows})
    return pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS)


_EVALUATION = (shift, shift_each, rotate_each, add_noise, drop_pixels, perturb, digit_subset,
               to_network_scale, accuracy_under, robustness)


def robustness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (over seeds) of the accuracy for each variant and condition."""
    g = table.groupby(["perturbation", "level", "variant"], sort=False)["accuracy"]
    return g.agg(mean="mean", std="std", seeds="count").reset_index()


def robustness_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A readable table: one row per condition, one ``mean ± std`` column per variant (in %)."""
    out = summary.assign(cell=[f"{100 * m:.2f}\u00a0±\u00a0{100 * s:.2f}"  # no line break inside a cell
                               for m, s in zip(summary["mean"], summary["std"])])
    labels = {"shift": "shift {:g} px", "rotate": "rotated {:g}°", "noise": "noise σ = {:g}",
              "dropout": "{:.0%} pixels dropped"}
    out["condition"] = [("clean" if not lv else labels[k].format(lv)) for k, lv in zip(out["perturbation"], out["level"])]
    table = out.pivot_table(index="condition", columns="variant", values="cell", aggfunc="first", sort=False)
    table = table[~table.index.duplicated()]
    table.columns.name = None
    table.index.name = None
    return table[list(dict.fromkeys(summary["variant"]))]


def plot_robustness(summary: pd.DataFrame):
    """Accuracy (mean ± std over seeds) against perturbation strength, a line per variant.

    Args:
        summary: the output of :func:`robustness_summary`.

    Returns:
        The matplotlib figure.
    """
    kinds = list(dict.fromkeys(summary["perturbation"]))
    fig, axes, left = _panels(len(kinds), sharey=False)
    markers = ["o", "s", "^", "D", "v"]
    for ax, kind in zip(axes, kinds):
        part = summary[summary["perturbation"] == kind]
        for i, (variant, rows) in enumerate(part.groupby("variant", sort=False)):
            ax.errorbar(rows["level"], 100 * rows["mean"], yerr=100 * rows["std"], marker=markers[i % 5],
                        ms=4, capsize=3, color=PALETTE[i % len(PALETTE)], label=variant)
        ax.set_xlabel(UNITS.get(kind, kind))
        ax.set_xticks(sorted(set(part["level"])))
    for ax in left:
        ax.set_ylabel("test accuracy (%)")
    legend(fig, axes)
    return fig


def pick(table: pd.DataFrame, column: str, **where) -> float:
    """The single value of ``column`` in the row of ``table`` that matches every ``where`` item.

    Raises:
        KeyError: no row or more than one row matches.
    """
    mask = np.ones(len(table), dtype=bool)
    for key, value in where.items():
        mask &= (table[key] == value).to_numpy()
    rows = table[mask]
    if len(rows) != 1:
        raise KeyError(f"{len(rows)} rows match {where}")
    return float(rows[column].iloc[0])


def ablation_table(experiment: str = "pooling-ablation") -> pd.DataFrame:
    """The variants of the pooling ablation: downsampling, parameters, full test-set accuracy.

    Returns:
        One row per variant with its downsampling, parameter count and test accuracy (mean ±
        std over the stored seeds, in %, on all 10,000 test images).
    """
    from nnlab import results as store
    from nnlab.book import experiments as E
    from nnlab.models import build, count_parameters

    exp = E.get(experiment)
    rows = []
    for v in exp.variants:
        s = store.summary(experiment, "test_acc", v.name)
        rows.append({"variant": v.name, "downsampling": re.sub(r"(\d)x(\d)", "\\1×\\2", dict(v.info).get("downsampling", "")),
                     "parameters": count_parameters(build(v.spec, exp.data.input_shape)),
                     "test accuracy (%)": f"{100 * s['mean']:.2f}\u00a0±\u00a0{100 * s['std']:.2f}",
                     "seeds": ", ".join(map(str, s["seeds"]))})
    return pd.DataFrame(rows)


class _Normalise(nn.Module):
    """Images in [0, 1] -> the normalised scale (see :func:`to_network_scale`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_network_scale(x)


def trained_first_layer(seed: int = 0, variant: str = "max-pool",
                        experiment: str = "pooling-ablation") -> nn.Module:
    """The first convolution of a stored network, preceded by the normalisation it was trained
    with, so that it can be fed images in [0, 1] like :func:`fixed_conv`."""
    from nnlab import results as store
    from nnlab.book import experiments  # noqa: F401  (registers the experiment)

    conv_layer = store.load_model(experiment, seed, variant)[0]
    return nn.Sequential(_Normalise(), conv_layer).requires_grad_(False).eval()


# ------------------------------------------------------------- pooling across channels

def rotated_copies(weight: torch.Tensor, turns: int = 4) -> torch.Tensor:
    """Each filter of ``weight`` ``(C, 1, k, k)`` rotated by 0, 90, 180, ... degrees.

    Returns:
        ``(C * turns, 1, k, k)``: the ``turns`` copies of filter ``c`` are channels
        ``c * turns`` to ``c * turns + turns - 1`` (quarter turns are exact on the pixel grid).
    """
    copies = [torch.rot90(weight, r, dims=(-2, -1)) for r in range(turns)]
    return torch.stack(copies, 1).reshape(-1, *weight.shape[1:])


@torch.no_grad()
def channel_pooling_rotation(images: torch.Tensor, degrees: float = 30, seed: int = 0) -> dict[str, float]:
    """Maxout-style pooling across channels, against rotations of the input.

    The chapter's 16 random 5x5 filters (:func:`fixed_conv`) are each copied at four quarter
    turns. Two feature vectors of 16 entries describe a digit: (a) each filter's global maximum
    after ReLU; (b) for each filter, the maximum over its four rotated copies (pooling across
    channels) and then over positions.

    Args:
        images: ``(N, 1, 28, 28)`` in [0, 1].
        degrees: a rotation that is not a quarter turn, applied as :func:`perturb` does.
        seed: seeds the rotation's sense per image.

    Returns:
        ``single_quarter`` and ``channel_quarter``: the mean relative change of (a) and (b)
        when every digit is turned by 90 degrees; ``channel_map_quarter``: the largest
        difference between the channel-pooled maps of the turned digit and the turned maps of
        the digit (0: those maps are equivariant); ``single_{degrees}`` and
        ``channel_{degrees}``: the mean relative changes under the rotation by ``degrees``.
    """
    layer = fixed_conv()
    weight = layer.weight.double()
    bank = rotated_copies(weight)
    pad = weight.shape[-1] // 2

    def single(x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, weight, padding=pad)).amax((-2, -1))

    def channel_maps(x: torch.Tensor) -> torch.Tensor:
        maps = F.relu(F.conv2d(x, bank, padding=pad))
        return maps.reshape(len(x), weight.shape[0], 4, *maps.shape[-2:]).amax(2)

    def change(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((b - a).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)).mean())

    x = images.double()
    turned = torch.rot90(x, 1, dims=(-2, -1))
    rotated = perturb(images, "rotate", degrees, seed).double()
    maps = {name: channel_maps(z) for name, z in (("x", x), ("turned", turned), ("rotated", rotated))}
    channel = {name: m.amax((-2, -1)) for name, m in maps.items()}
    plain = {name: single(z) for name, z in (("x", x), ("turned", turned), ("rotated", rotated))}
    return {"single_quarter": change(plain["x"], plain["turned"]),
            "channel_quarter": change(channel["x"], channel["turned"]),
            "channel_map_quarter": float((maps["turned"] - torch.rot90(maps["x"], 1, dims=(-2, -1))).abs().max()),
            f"single_{degrees:g}": change(plain["x"], plain["rotated"]),
            f"channel_{degrees:g}": change(channel["x"], channel["rotated"])}


def drop_comparison(table: pd.DataFrame, perturbation: str, level: float, a: str, b: str):
    """How much accuracy two variants lose from their own clean accuracy (level 0) to
    ``level`` of ``perturbation``, compared seed by seed (:func:`nnlab.stats.compare`, paired).

    ``table`` is :func:`robustness`'s. The compared quantity is the accuracy under the
    perturbation minus the clean accuracy (negative: a loss), so the verdict names ahead the
    variant that lost less; ``mean_a`` and ``mean_b`` are the two variants' mean changes.
    """
    from nnlab import stats

    def change(variant: str) -> dict[int, float]:
        rows = table[(table["variant"] == variant) & (table["perturbation"] == perturbation)]
        clean = rows[rows["level"] == 0].set_index("seed")["accuracy"]
        hit = rows[rows["level"] == float(level)].set_index("seed")["accuracy"]
        return {int(s): float(hit[s] - clean[s]) for s in hit.index}

    return stats.compare(change(a), change(b), names=(a, b), paired=True)
