"""Playground's data: the four classification generators, shuffled once and split.

See :mod:`nnlab.playground` for the semantics reproduced here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("circle", "xor", "gauss", "spiral")
DOMAIN = 6.0  # Playground draws and evaluates the plane on [-6, 6] x [-6, 6]


@dataclass(frozen=True)
class Dataset:
    """Playground points, already shuffled and split.

    Attributes:
        name: the generator (``circle``, ``xor``, ``gauss`` or ``spiral``).
        noise: the noise parameter as a fraction (Playground's slider value / 100).
        seed: the seed the points were generated (and shuffled) with.
        x_train: ``(N_train, 2)`` float64 coordinates, in training order.
        y_train: ``(N_train,)`` labels, +1.0 or -1.0.
        x_test: ``(N_test, 2)`` coordinates.
        y_test: ``(N_test,)`` labels.
    """

    name: str
    noise: float
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _normal(rng: np.random.Generator, mean: float, variance: float, n: int) -> np.ndarray:
    """Playground's ``normalRandom``: the polar Box-Muller method, scaled by sqrt(variance)."""
    out = np.empty(n)
    for i in range(n):
        while True:
            v1, v2 = 2 * rng.random() - 1, 2 * rng.random() - 1
            s = v1 * v1 + v2 * v2
            if 0 < s <= 1:
                break
        out[i] = np.sqrt(-2 * np.log(s) / s) * v1
    return mean + np.sqrt(variance) * out


def generate(name: str, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points from one of Playground's classification generators (unshuffled).

    Args:
        name: ``circle``, ``xor``, ``gauss`` or ``spiral``.
        n: number of points (even; half of them come from each class's generator).
        noise: Playground's noise as a fraction in [0, 0.5].
        rng: the random generator.

    Returns:
        ``(x, y)``: coordinates ``(n, 2)`` and labels ``(n,)`` in {+1, -1}.

    Raises:
        ValueError: for an unknown name, an odd ``n`` or a noise outside [0, 0.5].
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if n < 2 or n % 2:
        raise ValueError(f"n must be a positive even number, got {n!r}")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise is a fraction in [0, 0.5], got {noise!r}")
    half = n // 2
    if name == "circle":
        radius = 5.0

        def ring(r_lo: float, r_hi: float) -> tuple[np.ndarray, np.ndarray]:
            r = rng.uniform(r_lo, r_hi, half)
            angle = rng.uniform(0, 2 * np.pi, half)
            pts = np.stack([r * np.sin(angle), r * np.cos(angle)], 1)
            # The label is decided on a noisy copy of the point; the point itself is kept.
            noisy = pts + rng.uniform(-radius, radius, (half, 2)) * noise
            return pts, np.where(np.hypot(noisy[:, 0], noisy[:, 1]) < radius * 0.5, 1.0, -1.0)

        (p_in, y_in), (p_out, y_out) = ring(0, radius * 0.5), ring(radius * 0.7, radius)
        return np.concatenate([p_in, p_out]), np.concatenate([y_in, y_out])
    if name == "xor":
        pts = rng.uniform(-5, 5, (n, 2))
        pts += np.where(pts > 0, 0.3, -0.3)  # Playground's padding away from the axes
        noisy = pts + rng.uniform(-5, 5, (n, 2)) * noise
        return pts, np.where(noisy[:, 0] * noisy[:, 1] >= 0, 1.0, -1.0)
    if name == "gauss":
        variance = 0.5 + (4 - 0.5) * noise / 0.5  # Playground's d3 scale [0, .5] -> [0.5, 4]
        pos = np.stack([_normal(rng, 2, variance, half), _normal(rng, 2, variance, half)], 1)
        neg = np.stack([_normal(rng, -2, variance, half), _normal(rng, -2, variance, half)], 1)
        return np.concatenate([pos, neg]), np.repeat([1.0, -1.0], half)
    # spiral
    parts = []
    for delta in (0.0, np.pi):
        i = np.arange(half)
        r = i / half * 5
        t = 1.75 * i / half * 2 * np.pi + delta
        jitter = rng.uniform(-1, 1, (half, 2)) * noise
        parts.append(np.stack([r * np.sin(t), r * np.cos(t)], 1) + jitter)
    return np.concatenate(parts), np.repeat([1.0, -1.0], half)


def make_dataset(name: str = "circle", n: int = 500, noise: float = 0.0, seed: int = 0,
                 train_fraction: float = 0.5) -> Dataset:
    """Generate, shuffle once and split Playground data, as Playground's ``generateData``.

    Args:
        name: the generator (see :func:`generate`).
        n: number of points (Playground: 500).
        noise: noise as a fraction (Playground's percent / 100).
        seed: seeds the points and the shuffle.
        train_fraction: share of the points used for training (Playground: 50%).

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: as :func:`generate`, or for a ``train_fraction`` outside (0, 1).
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    rng = np.random.default_rng((seed, 0))
    x, y = generate(name, n, noise, rng)
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]
    split = int(np.floor(n * train_fraction))
    return Dataset(name, noise, seed, x[:split], y[:split], x[split:], y[split:])
