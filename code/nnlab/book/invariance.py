"""Equivariance and invariance checked exactly, and the evidence behind a comparison of seeds.

* :func:`pooling_shift_table`: a stride-``s`` pooling commutes with circular shifts by
  multiples of ``s`` (equivariance, exactly) and with no other shift.
* :func:`global_pooling_checks`: global average pooling is invariant to every circular shift
  and every permutation of positions; after a circularly padded convolution the pair is
  invariant to circular shifts of the input.
* :func:`compare_variants`: two variants of a stored ablation compared over seeds
  (:func:`nnlab.stats.compare`).

Every check runs in float64 on fixed random maps, in milliseconds.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from nnlab import stats


def _pool(x: torch.Tensor, kind: str, kernel: int, stride: int) -> torch.Tensor:
    return (F.max_pool2d if kind == "max" else F.avg_pool2d)(x, kernel, stride)


def _roll(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def pooling_shift_table(shifts: range = range(5), kind: str = "max", kernel: int = 2, stride: int = 2,
                        size: int = 16, channels: int = 4, seed: int = 0) -> pd.DataFrame:
    """How a pooling layer responds to circular shifts of its input map.

    A random ``channels x size x size`` map is shifted by ``d`` pixels along both axes. For
    each ``d`` the table compares the pooled shifted map with (a) the pooled original map
    (invariance) and (b) the pooled original map shifted by every whole number of output
    pixels, keeping the closest by root-mean-square difference (equivariance). The
    root-mean-square picks the natural neighbour for odd shifts; the largest absolute
    difference is nearly flat across output shifts on a random map and would pick one by noise.

    Returns:
        One row per shift: ``shift (px)``, ``change vs. pooled original`` (largest absolute
        difference), ``closest output shift`` and ``RMS change vs. closest shifted output``.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=g, dtype=torch.float64)
    pooled = _pool(x, kind, kernel, stride)
    out = pooled.shape[-1]
    rows = []
    for d in shifts:
        moved = _pool(_roll(x, d, d), kind, kernel, stride)
        gaps = {e: float((moved - _roll(pooled, e, e)).pow(2).mean().sqrt()) for e in range(out)}
        best = min(gaps, key=gaps.get)
        rows.append({"shift (px)": d, "change vs. pooled original": float((moved - pooled).abs().max()),
                     "closest output shift": best, "RMS change vs. closest shifted output": gaps[best]})
    return pd.DataFrame(rows)


def global_pooling_checks(size: int = 16, channels: int = 4, seed: int = 0) -> dict[str, float]:
    """Largest changes of global average pooling under transformations of its input.

    Returns:
        ``shift``: the largest change over all circular shifts of the map; ``permutation``:
        the change when the positions are shuffled; ``conv_shift``: the largest change of
        global average pooling after a 3x3 convolution with circular padding, over several
        circular shifts of the convolution's input; ``conv_shift_no_pool``: the same
        convolution's output without pooling (large: the maps move).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=g, dtype=torch.float64)
    gap = x.mean(dim=(-2, -1))
    shift = max(float((_roll(x, dy, dx).mean(dim=(-2, -1)) - gap).abs().max())
                for dy in range(size) for dx in range(size))
    order = torch.randperm(size * size, generator=g)
    shuffled = x.flatten(-2)[..., order].reshape_as(x)
    permutation = float((shuffled.mean(dim=(-2, -1)) - gap).abs().max())
    w = torch.randn(8, channels, 3, 3, generator=g, dtype=torch.float64)

    def conv(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="circular"), w)

    base = conv(x)
    moves = [(1, 0), (0, 3), (5, 7), (8, 8)]
    conv_shift = max(float((conv(_roll(x, dy, dx)).mean(dim=(-2, -1)) - base.mean(dim=(-2, -1))).abs().max())
                     for dy, dx in moves)
    no_pool = max(float((conv(_roll(x, dy, dx)) - base).abs().max()) for dy, dx in moves)
    equivariant = max(float((conv(_roll(x, dy, dx)) - _roll(base, dy, dx)).abs().max()) for dy, dx in moves)
    return {"shift": shift, "permutation": permutation, "conv_shift": conv_shift,
            "conv_shift_no_pool": no_pool, "conv_equivariance": equivariant}


def compare_variants(table: pd.DataFrame, perturbation: str, level: float, a: str, b: str) -> dict:
    """The per-seed accuracies of two variants under one condition of
    :func:`nnlab.book.pooling.robustness`'s table, compared by :func:`nnlab.stats.compare`:
    paired by seed when both variants have the same seeds (the stored ablation's do), Welch's
    test otherwise.

    Returns:
        ``n_a``, ``n_b`` (seeds), ``mean_a``, ``mean_b``, ``t`` (positive when ``b`` is
        higher), ``df``, ``p`` (two-sided), ``test`` (``paired`` or ``welch``), ``verdict``
        (the comparison's phrase, ``b`` named first) and ``report`` (the phrase with its
        evidence), ``max_a`` (best seed of ``a``) and
        ``min_b`` (worst seed of ``b``), and ``lowest``: the variant with the lowest mean
        accuracy under the condition.
    """
    part = table[(table["perturbation"] == perturbation) & (table["level"] == level)]

    def per_seed(variant: str) -> dict[int, float]:
        rows = part[part["variant"] == variant]
        return dict(zip(rows["seed"].astype(int), rows["accuracy"].astype(float)))

    xa, xb = per_seed(a), per_seed(b)
    c = stats.compare(xb, xa, names=(b, a))
    return {"n_a": c.n_b, "n_b": c.n_a, "mean_a": c.mean_b, "mean_b": c.mean_a, "t": c.t, "df": c.df, "p": c.p,
            "test": c.test, "verdict": c.verdict(), "report": c.report(), "max_a": max(xa.values()), "min_b": min(xb.values()),
            "lowest": str(part.groupby("variant")["accuracy"].mean().idxmin())}


def clipped_noise_offset(images: torch.Tensor, sigma: float, seed: int = 0) -> dict[str, float]:
    """What clipping does to the pooling chapter's Gaussian pixel noise
    (:func:`nnlab.book.pooling.add_noise`, which clips the noisy image back to [0, 1]).

    On a pixel that is exactly 0 only the positive half of the noise survives, so there the
    perturbation is ``max(0, sigma Z)``, of mean ``sigma / sqrt(2 pi)``: a one-sided brightening,
    not zero-mean noise. Returns ``zero_share`` (share of pixels exactly 0), ``offset`` (that
    mean, in closed form), ``measured_offset`` (the mean change of those pixels under one draw of
    :func:`nnlab.book.pooling.add_noise`), ``mean_change`` (the mean change over all pixels)
    and ``offset_network`` (``offset`` in the trained networks' normalised scale, divided by the
    training images' standard deviation).
    """
    import math

    from nnlab.book import pooling

    noisy = pooling.add_noise(images, sigma, torch.Generator().manual_seed(seed))
    zero = images == 0
    change = noisy - images
    offset = sigma / math.sqrt(2 * math.pi)
    from nnlab.data import normalisation

    _, std = normalisation()
    return {"zero_share": float(zero.float().mean()), "offset": offset,
            "measured_offset": float(change[zero].mean()), "mean_change": float(change.mean()),
            "offset_network": offset / float(std)}


def dropout_lead(table: pd.DataFrame, level: float = 0.4, leader: str = "avg-pool") -> dict[str, stats.Comparison]:
    """``leader``'s loss from clean accuracy with ``level`` of the pixels dropped, against each
    other variant of :func:`nnlab.book.pooling.robustness`'s table, paired by seed
    (:func:`nnlab.book.pooling.drop_comparison`), keyed by the other variant."""
    from nnlab.book import pooling

    others = [v for v in table["variant"].unique() if v != leader]
    return {other: pooling.drop_comparison(table, "dropout", level, leader, other) for other in others}


def variant_comparison(table: pd.DataFrame, perturbation: str, level: float, a: str, b: str) -> stats.Comparison:
    """:func:`compare_variants`'s test as a :class:`nnlab.stats.Comparison`, ``b`` named first."""
    part = table[(table["perturbation"] == perturbation) & (table["level"] == level)]

    def per_seed(variant: str) -> dict[int, float]:
        rows = part[part["variant"] == variant]
        return dict(zip(rows["seed"].astype(int), rows["accuracy"].astype(float)))

    return stats.compare(per_seed(b), per_seed(a), names=(b, a))


def _family_specs() -> dict[str, list[tuple[str, str, str, float, str, str]]]:
    """The pooling chapter's tests, ``(key, kind, perturbation, level, a, b)`` per family:
    ``accuracy`` compares accuracies (``a`` named first), ``loss`` losses from clean accuracy
    (:func:`nnlab.book.pooling.drop_comparison`)."""
    shift = [(f"shift{lv}_acc", "accuracy", "shift", lv, "max-pool", "stride-2") for lv in (2, 3)]
    shift += [(f"shift{lv}_loss_{other}", "loss", "shift", lv, "max-pool", other)
              for lv in (1, 2, 3) for other in ("stride-2", "no-pool")]
    noise = [(f"noise04_acc_{other}", "accuracy", "noise", 0.4, other, "max-pool")
             for other in ("avg-pool", "stride-2", "no-pool")]
    noise += [(f"noise{str(s).replace('.', '')}_loss_avg_none", "loss", "noise", s, "avg-pool", "no-pool")
              for s in (0.3, 0.4)]
    return {
        "clean": [(f"clean_{a}_{b}", "accuracy", "shift", 0, a, b) for a, b in
                  (("max-pool", "stride-2"), ("no-pool", "stride-2"), ("no-pool", "avg-pool"), ("max-pool", "avg-pool"))],
        "shift": shift,
        "rotation": [(f"rotate30_loss_{other}", "loss", "rotate", 30, "max-pool", other) for other in ("no-pool", "stride-2")],
        "noise": noise,
        "dropping": [(f"dropout04_loss_{other}", "loss", "dropout", 0.4, "avg-pool", other)
                     for other in ("max-pool", "stride-2", "no-pool")],
    }


def corrected_tests(table: pd.DataFrame) -> dict[str, stats.Comparison]:
    """Every paired test the pooling chapter reports on :func:`nnlab.book.pooling.robustness`'s
    table, Holm-corrected (:func:`nnlab.stats.holm`) within its family: clean accuracy, shifts,
    rotation, noise and dropped pixels, one family per kind of perturbation, fixed before the
    tests are run. Keyed by test name (for example ``shift3_acc`` or ``dropout04_loss_no-pool``)."""
    from nnlab.book import pooling

    out: dict[str, stats.Comparison] = {}
    for specs in _family_specs().values():
        tests = [variant_comparison(table, pert, level, b, a) if kind == "accuracy"
                 else pooling.drop_comparison(table, pert, level, a, b) for _, kind, pert, level, a, b in specs]
        out.update(zip((spec[0] for spec in specs), stats.holm(tests)))
    return out


def family_sizes() -> dict[str, int]:
    """How many tests each family of :func:`corrected_tests` holds."""
    return {name: len(specs) for name, specs in _family_specs().items()}
