"""Zero padding, measured: what it preserves and what it distorts (problem 3A).

A convolution that only visits windows lying entirely inside the image ("valid") shrinks
the image by ``kernel - 1`` pixels per layer and visits border pixels far less often than
central ones. Zero padding keeps the size, and evens out how often pixels are visited
(completely only with "full" padding of ``kernel - 1``; "same" padding narrows the gap without
closing it), at a price: the windows near the border see zeros that are not part of the
image, so the outputs there differ from what the same filter gives where the image really
continues. The functions below compute each of these effects.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from nnlab import conv
from nnlab.plots import PALETTE, TEXT_WIDTH, panel_grid


def stack_sizes(size: int, layers: int, kernel: int = 3, padding: int = 0, stride: int = 1) -> list[int]:
    """Side length of a square image after 0, 1, ..., ``layers`` convolutions.

    Args:
        size: input side length.
        layers: number of identical convolutions stacked.
        kernel, padding, stride: of every layer.

    Returns:
        ``[size, after 1 layer, ...]``; shorter than ``layers + 1`` when a layer no longer
        fits its input (the list stops at the last size that exists).
    """
    sizes = [size]
    for _ in range(layers):
        try:
            sizes.append(conv.output_size(sizes[-1], kernel, stride, padding))
        except conv.ShapeError:
            break
    return sizes


def max_depth(size: int, kernel: int = 3, padding: int = 0, limit: int = 1000) -> int:
    """How many identical stride-1 convolutions fit before the image vanishes.

    Args:
        size: input side length.
        kernel, padding: of every layer.
        limit: the answer when the size never shrinks (``2 * padding >= kernel - 1``).

    Returns:
        The number of layers that still produce an output of at least one pixel.
    """
    return len(stack_sizes(size, limit, kernel, padding)) - 1


def pixel_coverage(size: int, kernel: int, padding: int = 0) -> torch.Tensor:
    """For every pixel of a ``size x size`` image, the number of windows that contain it.

    Args:
        size: image side length.
        kernel: window side length (stride 1).
        padding: zeros added on each side.

    Returns:
        An integer tensor ``(size, size)``; computed by scattering a one from every output
        position back over its window (a transposed convolution with a kernel of ones).
    """
    out = conv.output_size(size, kernel, 1, padding)
    ones = torch.ones(1, 1, out, out, dtype=torch.float64)
    counts = F.conv_transpose2d(ones, torch.ones(1, 1, kernel, kernel, dtype=torch.float64), padding=padding)
    return counts[0, 0].round().long()


def padding_exposure(size: int, kernel: int, padding: int) -> dict[str, float | int]:
    """How much of the convolution's work looks at padding rather than at the image.

    Args:
        size: image side length.
        kernel: window side length (stride 1).
        padding: zeros added on each side.

    Returns:
        ``output_size``; ``windows`` (outputs in total); ``windows_with_padding`` and their
        ``share``; ``mean_padded_fraction`` (the fraction of a window's pixels that are
        padding, averaged over all windows) and ``max_padded_fraction``.
    """
    mask = F.pad(torch.ones(1, 1, size, size, dtype=torch.float64), (padding,) * 4)
    real = F.conv2d(mask, torch.ones(1, 1, kernel, kernel, dtype=torch.float64))[0, 0]
    padded = 1 - real / kernel**2
    touching = int((padded > 1e-12).sum())
    return {"output_size": int(real.shape[-1]), "windows": int(real.numel()),
            "windows_with_padding": touching, "share": touching / real.numel(),
            "mean_padded_fraction": float(padded.mean()), "max_padded_fraction": float(padded.max())}


def box_blur_stack(images: torch.Tensor, layers: int, padding: int) -> list[torch.Tensor]:
    """Apply a 3x3 averaging filter ``layers`` times, keeping every intermediate result.

    Args:
        images: ``(N, 1, H, W)``.
        layers: number of blurs.
        padding: 1 (zero padding, size kept) or 0 (valid, shrinks by 2 per layer).

    Returns:
        ``[images, after 1 blur, ...]``, stopping early if the image vanishes.
    """
    box = torch.full((1, 1, 3, 3), 1 / 9, dtype=images.dtype)
    out = [images]
    for _ in range(layers):
        if out[-1].shape[-1] + 2 * padding < 3:
            break
        out.append(F.conv2d(out[-1], box, padding=padding))
    return out


def constant_image_response(size: int = 6, kernel: int = 3) -> torch.Tensor:
    """A ``kernel x kernel`` averaging filter, zero-padded to keep the size, on an image of ones.

    Away from the border the output is exactly 1; at the border it drops to the fraction
    of the window that lies inside the image (``4/9`` at a corner for a 3x3 window).

    Returns:
        The ``(size, size)`` output.
    """
    box = torch.full((1, 1, kernel, kernel), 1 / kernel**2, dtype=torch.float64)
    return F.conv2d(torch.ones(1, 1, size, size, dtype=torch.float64), box, padding=kernel // 2)[0, 0]


def distance_to_border(size: int) -> torch.Tensor:
    """``(size, size)`` tensor: for every pixel, the distance (in pixels) to the nearest edge."""
    i = torch.arange(size)
    d = torch.minimum(i, size - 1 - i)
    return torch.minimum(d.view(-1, 1), d.view(1, -1))


def random_conv_stack(layers: int, channels: int = 8, seed: int = 0) -> list[nn.Conv2d]:
    """``layers`` 3x3 convolutions (1 -> channels -> ... -> channels) with PyTorch's default
    initialisation (weights and biases), seeded: a stand-in for an untrained network."""
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    stack = [nn.Conv2d(1 if i == 0 else channels, channels, 3).double() for i in range(layers)]
    torch.set_rng_state(gen_state)
    return stack


#: PyTorch's names for the values a padding invents (``nn.Conv2d(padding_mode=...)``) and the
#: matching ``F.pad`` modes: zeros; the image mirrored about its edge pixel; the edge pixel
#: repeated; the opposite edge (the image wraps around, as on a torus).
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


@torch.no_grad()
def border_distortion(images: torch.Tensor, background: float, layers: int = 4, channels: int = 8,
                      seed: int = 0, mode: str = "zeros") -> torch.Tensor:
    """How far padding moves the activations of a conv stack, by distance to the border.

    Two ways to run the same stack of 3x3 conv + ReLU layers: (a) a padding of 1 at every
    layer (zeros, or another mode of :data:`PADDING_MODES`); (b) the reference: paste the image
    into a canvas that continues it with its own ``background`` value, run the stack without
    padding, and cut out the image's area.
    Where a layer's window stays inside the image (a) and (b) agree exactly; near the
    border (a) sees invented values where the world continues.

    Args:
        images: ``(N, 1, H, W)`` square images in the scale the network sees.
        background: the value of an empty pixel in that scale (0 for pixels in [0, 1];
            about -0.42 for MNIST normalised to zero mean and unit variance).
        layers: depth of the stack.
        channels: filters per layer.
        seed: for the stack's random weights.
        mode: the padding of (a), a key of :data:`PADDING_MODES`.

    Returns:
        ``(layers, H // 2 + H % 2)`` tensor: for layer ``l`` and distance ``d`` from the
        nearest edge, the mean absolute difference between (a) and (b) over images,
        channels and pixels at that distance, divided by the mean absolute activation of
        (b) over the whole map of that layer.
    """
    return border_distortion_modes(images, background, (mode,), layers, channels, seed)[mode]


@torch.no_grad()
def border_distortion_modes(images: torch.Tensor, background: float, modes: Sequence[str] = tuple(PADDING_MODES),
                            layers: int = 4, channels: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`border_distortion` for several padding modes, sharing one run of the reference.

    Returns:
        ``{mode: (layers, H // 2 + H % 2) tensor}`` in the order of ``modes``.

    Raises:
        ValueError: a mode that is not a key of :data:`PADDING_MODES`.
    """
    unknown = [m for m in modes if m not in PADDING_MODES]
    if unknown:
        raise ValueError(f"unknown padding mode {unknown[0]!r}; choose one of {', '.join(PADDING_MODES)}")
    x = images.double()
    size = x.shape[-1]
    stack = random_conv_stack(layers, channels, seed)
    padded = dict.fromkeys(modes, x)
    reference = F.pad(x, (layers,) * 4, value=background)
    dist = distance_to_border(size)
    rows: dict[str, list[torch.Tensor]] = {m: [] for m in modes}
    for i, layer in enumerate(stack):
        reference = F.relu(layer(reference))
        margin = layers - i - 1
        ref_crop = reference[..., margin:margin + size, margin:margin + size]
        scale = ref_crop.abs().mean()
        for m in modes:
            padded[m] = F.relu(F.conv2d(F.pad(padded[m], (1,) * 4, mode=PADDING_MODES[m]), layer.weight, layer.bias))
            err = (padded[m] - ref_crop).abs().mean(dim=(0, 1))
            rows[m].append(torch.stack([err[dist == d].mean() for d in range(int(dist.max()) + 1)]) / scale)
    return {m: torch.stack(r).float() for m, r in rows.items()}


def plot_padding_stack(image: torch.Tensor, layers: tuple[int, ...] = (0, 3, 6, 9, 12),
                       background: float | None = None):
    """One digit blurred by stacked 3x3 averages: with zero padding, without padding, and the
    error of the padded version.

    Every image panel is drawn on the same pixel scale, so the unpadded images visibly shrink.
    The bottom row shows the padded result minus the result on a canvas where the image
    continues with its background: the artefact that zero padding adds.

    Args:
        image: ``(1, 1, 28, 28)`` or ``(28, 28)``, in the scale the network sees.
        layers: how many blurs to show.
        background: the value of an empty pixel (default: the image's minimum).

    Returns:
        The matplotlib figure.
    """
    x = image.reshape(1, 1, *image.shape[-2:]).double()
    background = float(x.min()) if background is None else background
    vmin, vmax = float(x.min()), float(x.max())
    padded = box_blur_stack(x, max(layers), 1)
    valid = box_blur_stack(x, max(layers), 0)
    errors = [padded[k] - box_blur_stack(F.pad(x, (k,) * 4, value=background), k, 0)[-1] for k in layers]
    limit = max(float(e.abs().max()) for e in errors) or 1.0
    size = x.shape[-1]
    labels = ("zero padding\n(p = 1)", "no padding\n(valid)", "padding error")
    fig, axes = plt.subplots(3, len(layers), figsize=(TEXT_WIDTH, 5.3), layout="constrained")
    for c, k in enumerate(layers):
        for r in range(3):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_xlim(0, size)
            ax.set_ylim(size, 0)
            for spine in ax.spines.values():
                spine.set_visible(False)
        for r, stack in enumerate((padded, valid)):
            ax = axes[r, c]
            if k >= len(stack):
                ax.set_title(f"{k} layers\nnone left", fontsize=9)
                continue
            img = stack[k][0, 0].numpy()
            off = (size - img.shape[0]) / 2
            ax.imshow(img, cmap="gray_r", vmin=vmin, vmax=vmax,
                      extent=(off, off + img.shape[1], off + img.shape[0], off))
            ax.add_patch(plt.Rectangle((off, off), img.shape[1], img.shape[0], fill=False,
                                       edgecolor=PALETTE[0 if r == 0 else 3], lw=1.2))
            ax.set_title(f"{k} layers\n{img.shape[0]}×{img.shape[1]}", fontsize=9)
        im = axes[2, c].imshow(errors[c][0, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                               extent=(0, size, size, 0))
        axes[2, c].set_title(f"{k} layers", fontsize=9)
    for r, label in enumerate(labels):
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.colorbar(im, ax=axes[2, :], shrink=0.6, location="bottom", label="padded − continued")
    return fig


def plot_border_distortion(curves: dict[str, torch.Tensor]):
    """Relative activation error against distance to the border, one panel per input scale.

    Args:
        curves: panel title -> output of :func:`border_distortion`.

    Returns:
        The matplotlib figure.
    """
    fig, axes, _ = panel_grid(len(curves), panel_height=2.9, sharey=True)
    for ax, (title, err) in zip(axes, curves.items()):
        d = np.arange(err.shape[1])
        for layer in range(err.shape[0]):
            ax.plot(d, err[layer].numpy(), marker="o", ms=3, color=PALETTE[layer % len(PALETTE)],
                    label=f"after layer {layer + 1}")
        ax.set_xlabel("distance to the nearest edge\n(pixels)")
        ax.set_title(title.replace(" (", "\n("), fontsize=10)
        ax.set_xlim(-0.3, min(err.shape[1] - 1, 2 * err.shape[0] + 2) + 0.3)
    axes[0].set_ylabel("mean |padded − reference|\n/ mean |reference|")
    axes[0].legend()
    return fig


def same_padding_output(size: int, kernel: int) -> int:
    """Output side length of PyTorch's ``padding="same"`` (stride 1): it pads ``kernel - 1``
    pixels in total, splitting them unevenly when the kernel is even."""
    import warnings

    layer = nn.Conv2d(1, 1, kernel, padding="same", bias=False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # an even kernel makes PyTorch warn that it copies the input
        return int(layer(torch.zeros(1, 1, size, size)).shape[-1])


def problem_facts(size: int = 20, kernel: int = 8, digit: int = 28, digit_kernel: int = 3) -> dict:
    """The numbers behind problem 3A, for ``kernel x kernel`` windows on a ``size x size`` image,
    and for a stack of ``digit_kernel`` convolutions on a ``digit x digit`` MNIST image.

    Returns:
        A flat dict: output sizes without padding, with full padding (``kernel - 1``), with
        the two symmetric paddings around "same", and with PyTorch's ``"same"``; window
        coverage of a corner and of a central pixel; the exposure of the windows to padding
        (:func:`padding_exposure`) for full and near-same padding; the digit's size after
        stacked layers with and without padding and the deepest unpadded stack.
    """
    full, half = kernel - 1, (kernel - 1) // 2
    valid_cov, full_cov = pixel_coverage(size, kernel, 0), pixel_coverage(size, kernel, full)
    facts: dict[str, float | int] = {
        "size": size, "kernel": kernel, "valid_out": conv.output_size(size, kernel),
        "full_pad": full, "full_out": conv.output_size(size, kernel, 1, full),
        "pad_lo": half, "pad_lo_out": conv.output_size(size, kernel, 1, half),
        "pad_hi": half + 1, "pad_hi_out": conv.output_size(size, kernel, 1, half + 1),
        "same_out": same_padding_output(size, kernel),
        "valid_corner_cov": int(valid_cov[0, 0]), "valid_centre_cov": int(valid_cov.max()),
        "valid_share_under": float((valid_cov < valid_cov.max()).double().mean()),
        "full_min_cov": int(full_cov.min()), "full_max_cov": int(full_cov.max()),
    }
    for name, p in (("full", full), ("hi", half + 1)):
        for key, value in padding_exposure(size, kernel, p).items():
            facts[f"{name}_{key}"] = value
    sizes = stack_sizes(digit, 30, digit_kernel)
    facts.update({"digit": digit, "digit_kernel": digit_kernel, "digit_after_5": sizes[5],
                  "digit_after_10": sizes[10], "digit_max_depth": len(sizes) - 1,
                  "digit_last_size": sizes[-1], "digit_padded_after_10": stack_sizes(digit, 10, digit_kernel, 1)[-1],
                  "digit_corner_cov": int(pixel_coverage(digit, digit_kernel)[0, 0]),
                  "digit_centre_cov": digit_kernel**2})
    return facts


#: The three classic paddings of a stride-1 convolution with an odd kernel ``k``, as the
#: zeros added on each side: none, the "same" padding that keeps the size, and "full".
PADDINGS = {"valid": lambda k: 0, "same": lambda k: (k - 1) // 2, "full": lambda k: k - 1}


def coverage_by_padding(size: int, kernel: int) -> dict[str, torch.Tensor]:
    """:func:`pixel_coverage` of a ``size x size`` image under each padding of :data:`PADDINGS`.

    Returns:
        ``{"valid": counts, "same": counts, "full": counts}``, each ``(size, size)``.
    """
    return {name: pixel_coverage(size, kernel, pad(kernel)) for name, pad in PADDINGS.items()}


def coverage_facts(size: int, kernel: int) -> dict[str, int]:
    """Windows containing the corner pixel, an edge pixel (middle of the top row) and the
    central pixel under each padding: keys ``{padding}_{corner|edge|centre}``."""
    facts = {}
    for name, counts in coverage_by_padding(size, kernel).items():
        facts.update({f"{name}_corner": int(counts[0, 0]), f"{name}_edge": int(counts[0, size // 2]),
                      f"{name}_centre": int(counts[size // 2, size // 2])})
    return facts


def plot_coverage(size: int = 6, kernel: int = 3):
    """Heat maps of :func:`coverage_by_padding`, one panel per padding, each pixel annotated
    with the number of windows that contain it."""
    maps = coverage_by_padding(size, kernel)
    fig, axes, _ = panel_grid(len(maps), cols=len(maps), panel_height=2.3)
    top = max(int(m.max()) for m in maps.values())
    for ax, (name, counts) in zip(axes, maps.items()):
        ax.imshow(counts.numpy(), cmap="viridis", vmin=0, vmax=top)
        for (i, j), v in np.ndenumerate(counts.numpy()):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 * top else "black")
        ax.set_title(f"{name} (padding {PADDINGS[name](kernel)})")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    return fig


def torch_same_refusal(stride: int = 2) -> str:
    """The message with which PyTorch refuses ``padding="same"`` for a strided convolution
    (empty if it accepts it)."""
    try:
        nn.Conv2d(1, 1, 3, stride=stride, padding="same")
    except (ValueError, RuntimeError) as exc:
        return str(exc)
    return ""


def strided_same_table(cases: list[tuple[int, int, int]]) -> pd.DataFrame:
    """The "same" padding of any stride (``nnlab.conv.same_padding``), checked by running it.

    For each ``(size, kernel, stride)``: the target ``ceil(size / stride)``, the total padding
    and its split, the output of ``F.conv2d`` on the input padded that way with ``F.pad``, and,
    at stride 1, whether PyTorch's ``padding="same"`` gives exactly the same values (at larger
    strides PyTorch refuses it: ``refused``).

    Returns:
        A ``pandas.DataFrame`` with one row per case.
    """
    import warnings

    g = torch.Generator().manual_seed(0)
    rows = []
    for size, kernel, stride in cases:
        before, after = conv.same_padding(size, kernel, stride)
        x = torch.randn(1, 1, size, size, generator=g, dtype=torch.float64)
        w = torch.randn(1, 1, kernel, kernel, generator=g, dtype=torch.float64)
        ours = F.conv2d(F.pad(x, (before, after, before, after)), w, stride=stride)
        if stride == 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # even kernels: PyTorch warns that it copies the input
                same = F.conv2d(x, w, padding="same")
            torch_says = "identical" if torch.equal(same, ours) else "DIFFERENT"
        else:
            torch_says = "refused" if torch_same_refusal(stride) else "accepted"
        rows.append({"n": size, "k": kernel, "s": stride, "⌈n/s⌉": -(-size // stride),
                     "total padding": before + after, "before": before, "after": after,
                     "output": int(ours.shape[-1]), 'padding="same"': torch_says})
    return pd.DataFrame(rows)


def edge_ink_share(rings: tuple[int, ...] = (1, 2, 4)) -> dict[int, float]:
    """Share of the MNIST test digits with any ink (a non-zero pixel) within ``r`` pixels of
    the image's edge, for each ``r`` of ``rings``. MNIST digits were size-normalised to fit a
    20×20 box and placed in the 28×28 field by their centre of mass, so the box is not centred
    and a few digits reach the outermost ring."""
    from nnlab import data

    images = data.raw_split("test")[0] > 0
    size = images.shape[-1]
    out = {}
    for r in rings:
        inner = torch.zeros(size, size, dtype=torch.bool)
        inner[r:size - r, r:size - r] = True
        out[r] = float((images & ~inner).flatten(1).any(dim=1).float().mean())
    return out
