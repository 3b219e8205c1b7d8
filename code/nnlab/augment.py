"""Data augmentation on whole tensors: one call distorts a full epoch of images.

Distorting the training set once per epoch, in large chunks, costs a fraction of a second
on a CPU, where per-batch or per-item transforms would dominate the step time of a small
network. ``shift`` translates by whole pixels; ``affine`` adds small rotations and
scalings; ``elastic`` adds a mild elastic field: random displacements of at most
``elastic_strength`` pixels (2 by default) drawn at the nodes of a coarse ``elastic_grid`` x
``elastic_grid`` lattice (4 x 4) and interpolated bicubically, in the spirit of Simard et al.
(2003) but far gentler than their field (Gaussian-smoothed per-pixel noise, sigma = 4, scaled by
alpha = 34).
Pixels moved in from outside the image take the background value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("none", "shift", "affine", "elastic")


def distort(images: torch.Tensor, kind: str, generator: torch.Generator, *, background: float,
            max_shift: float = 2.0, max_rotate: float = 10.0, max_scale: float = 0.1,
            elastic_strength: float = 2.0, elastic_grid: int = 4,
            chunk: int = 8192) -> torch.Tensor:
    """Randomly distorted copy of ``images`` ``(N, C, H, W)``; every channel of an image moves
    with the same distortion.

    Args:
        images: the (normalised) images.
        kind: one of ``none``, ``shift``, ``affine``, ``elastic`` (elastic includes affine).
        generator: the source of randomness (on the CPU), so that runs are reproducible.
        background: the value of an empty pixel in the images' scale.
        max_shift: largest translation in pixels (``shift`` rounds to whole pixels).
        max_rotate: largest rotation in degrees (``affine``, ``elastic``).
        max_scale: largest relative change of size (``affine``, ``elastic``).
        elastic_strength: largest displacement (pixels) at the nodes of the elastic field, in
            each direction (bicubic interpolation can overshoot it slightly between nodes).
        elastic_grid: the field is drawn on a coarse ``grid x grid`` lattice and upsampled
            bicubically, so it varies over about ``H / grid`` pixels. This is a mild field, not
            Simard et al.'s (Gaussian-smoothed white noise with sigma = 4 and alpha = 34).

    Raises:
        ValueError: unknown kind, or inputs that are not a batch of images.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown augmentation {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "none":
        return images
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"augmentation {kind!r} needs a float batch of images (N, C, H, W), got "
                         f"{images.dtype} of shape {tuple(images.shape)}; use 'none' for other inputs")
    if kind == "shift" and not (max_shift >= 0 and math.isfinite(max_shift)):
        raise ValueError(f"max_shift must be a finite number >= 0, got {max_shift!r}")
    out = torch.empty_like(images)
    n, _, h, w = images.shape
    for start in range(0, n, chunk):
        x = images[start:start + chunk]
        b = x.shape[0]
        u = lambda *shape: torch.rand(*shape, generator=generator).to(images.device) * 2 - 1  # noqa: E731
        if kind == "shift":
            # Whole-pixel shifts: pad, then take each image's own crop via advanced indexing.
            s = int(max_shift)
            dy = torch.randint(-s, s + 1, (b,), generator=generator).to(images.device)
            dx = torch.randint(-s, s + 1, (b,), generator=generator).to(images.device)
            padded = F.pad(x, (s, s, s, s), value=background)
            rows = (torch.arange(h, device=x.device).view(1, h) + s - dy.view(b, 1))
            cols = (torch.arange(w, device=x.device).view(1, w) + s - dx.view(b, 1))
            idx_b = torch.arange(b, device=x.device).view(b, 1, 1)
            # indexing with a slice between advanced indices puts the channel axis last
            crops = padded[idx_b, :, rows.view(b, h, 1), cols.view(b, 1, w)]
            out[start:start + b] = crops.permute(0, 3, 1, 2)
            continue
        angle = u(b) * math.radians(max_rotate)
        scale = 1 + u(b) * max_scale
        tx, ty = u(b) * max_shift * 2 / w, u(b) * max_shift * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if kind == "elastic":
            coarse = u(b, 2, elastic_grid, elastic_grid) * elastic_strength
            field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
            grid = grid + field.permute(0, 2, 3, 1) * torch.tensor([2 / w, 2 / h], device=x.device)
        out[start:start + b] = F.grid_sample(x - background, grid, mode="bilinear",
                                             padding_mode="zeros", align_corners=False) + background
    return out
