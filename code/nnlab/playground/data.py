"""Playground's data: the four classification generators, shuffled once and split; or
points of your own.

Every :class:`Dataset` holds labels -1 and +1, the two values of Playground's ``tanh``
output unit: the constructor refuses any other label (see :func:`check_labels`), and
:meth:`Dataset.from_arrays` maps two classes of any kind (0/1 from scikit-learn, say) to
-1 and +1. A dataset also carries the square of the plane its figures show (its
:attr:`~Dataset.extent`): Playground's ``[-6, 6]`` square for the generated data, a square
around the points for points of your own.

See :mod:`nnlab.playground` for the semantics reproduced here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DATASETS = ("circle", "xor", "gauss", "spiral")
DOMAIN = 6.0  # Playground draws and evaluates the plane on [-6, 6] x [-6, 6]

Extent = tuple[float, float, float, float]
"""A rectangle of the plane, ``(x1_min, x1_max, x2_min, x2_max)`` (matplotlib's ``extent``)."""

PLAYGROUND_EXTENT: Extent = (-DOMAIN, DOMAIN, -DOMAIN, DOMAIN)


def _numpy(values: Any) -> np.ndarray:
    """``values`` as a numpy array: numpy arrays, lists and torch tensors (moved to the CPU)."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _one(value: Any) -> str:
    """A label as code would write it: ``0``, ``2.5``, ``True``, ``'cat'``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{value:g}"
    return repr(value.item() if isinstance(value, np.generic) else value)


def _shown(values: np.ndarray, most: int = 6) -> str:
    """Distinct values as ``{0, 1}``, the first ``most`` of them."""
    head = ", ".join(_one(v) for v in values[:most])
    return "{" + head + (f", ... ({len(values)} distinct)" if len(values) > most else "") + "}"


def _distinct(y: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.unique(y)
    except TypeError as exc:  # mixed types that do not sort
        raise ValueError(f"{what or 'labels'}: values of mixed types cannot be compared "
                         f"({exc})") from None


def check_labels(y: Any, what: str = "") -> None:
    """Refuse labels other than -1 and +1, saying what was found and how to fix it.

    Playground's output unit is a ``tanh``, whose range is (-1, 1), and its loss and
    accuracy compare that output with labels -1 and +1. Labels 0/1 (scikit-learn's) or any
    other values would train towards the wrong targets without an error, so they are
    refused wherever points enter: the :class:`Dataset` constructor and
    :func:`~nnlab.playground.training.train`. :meth:`Dataset.from_arrays` maps two classes
    of any kind to -1 and +1 for you.

    Args:
        y: the labels (array, list or tensor).
        what: how the message names them (``y_train``, say), if at all.

    Raises:
        ValueError: one line naming the values found and the fix.
    """
    y = _numpy(y)
    found = _distinct(y, what)
    numeric = y.dtype.kind in "biuf"
    if numeric and np.isin(found, (-1.0, 1.0)).all():
        return
    if numeric and np.isnan(found.astype(float)).any():
        fix = "drop the points without a label"
    elif numeric and np.isin(found, (0, 1)).all():
        fix = "map them with y = 2*y - 1"
    elif len(found) == 2:
        fix = (f"map them with y = np.where(y == {_one(found[1])}, 1.0, -1.0), "
               "or pass the points through Dataset.from_arrays(x, y)")
    else:
        fix = "keep two classes and map them to -1 and +1 (Dataset.from_arrays does the mapping)"
    raise ValueError(f"{what + ': ' if what else ''}labels must be -1 or +1 (Playground's tanh "
                     f"output); got values {_shown(found)}: {fix}")


def as_extent(extent: float | Sequence[float]) -> Extent:
    """An extent from a half-width ``h`` (the square ``[-h, h]²``) or four numbers.

    Args:
        extent: ``h > 0``, or ``(x1_min, x1_max, x2_min, x2_max)`` with each minimum below
            its maximum.

    Returns:
        The four bounds as floats.

    Raises:
        ValueError: for anything else.
    """
    try:
        if np.ndim(extent) == 0:
            bounds = (-float(extent), float(extent)) * 2
        else:
            bounds = tuple(map(float, extent))
    except (TypeError, ValueError):
        bounds = ()
    if (len(bounds) != 4 or not all(map(math.isfinite, bounds))
            or not (bounds[0] < bounds[1] and bounds[2] < bounds[3])):
        raise ValueError("extent must be a half-width h > 0 or (x1_min, x1_max, x2_min, x2_max) "
                         f"with each min < max; got {extent!r}")
    return bounds  # type: ignore[return-value]


def extent_around(x: Any, margin: float = 0.1, square: bool = True) -> Extent:
    """The points' bounding box, widened by ``margin`` on every side.

    Args:
        x: points ``(N, 2)``.
        margin: added on each side, as a fraction of the box's longer side.
        square: widen the shorter side to a square with the same centre (so that a plot
            with equal axes fills its panel); ``False``: one box per axis.

    Returns:
        The :data:`Extent`. An axis on which all points agree gets the longer side's width,
        or 2 if the points all coincide.
    """
    x = np.asarray(_numpy(x), dtype=np.float64)
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    longest = float(span.max()) or 2.0 / (1 + 2 * margin)
    span = np.full(2, longest) if square else np.where(span > 0, span, longest)
    centre, half = (lo + hi) / 2, span * (0.5 + margin)
    return (float(centre[0] - half[0]), float(centre[0] + half[0]),
            float(centre[1] - half[1]), float(centre[1] + half[1]))


def _points(x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one set of points and labels; return them as float64 (the same arrays if already)."""
    try:
        x = np.asarray(_numpy(x), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"x_{what}: coordinates must be numbers") from None
    if x.ndim != 2 or x.shape[1] != 2 or not len(x):
        raise ValueError(f"x_{what} must have shape (N, 2) with N >= 1, one row (x1, x2) per "
                         f"point; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"x_{what}: coordinates must be finite (found NaN or infinity)")
    check_labels(y, f"y_{what}")
    y = np.asarray(_numpy(y), dtype=np.float64)
    if y.shape != (len(x),):
        raise ValueError(f"y_{what} must have shape ({len(x)},), one label per point of x_{what}; "
                         f"got shape {y.shape}")
    return x, y


@dataclass(frozen=True)
class Dataset:
    """Playground points, already shuffled and split.

    Build one with :func:`make_dataset` (Playground's generators) or
    :meth:`Dataset.from_arrays` (points of your own). The constructor checks its points:
    coordinates ``(N, 2)`` and finite, one label per point, every label -1 or +1 (see
    :func:`check_labels`); otherwise it raises ``ValueError``.

    Attributes:
        name: the generator (``circle``, ``xor``, ``gauss`` or ``spiral``), or a name for
            points of your own.
        noise: the noise parameter as a fraction (Playground's slider value / 100);
            ``None`` for points that did not come from a generator.
        seed: the seed the points were generated (and shuffled) with.
        x_train: ``(N_train, 2)`` float64 coordinates, in training order.
        y_train: ``(N_train,)`` labels, +1.0 or -1.0.
        x_test: ``(N_test, 2)`` coordinates.
        y_test: ``(N_test,)`` labels.
        extent: the part of the plane the figures show, ``(x1_min, x1_max, x2_min,
            x2_max)``; a half-width ``h`` is stored as ``(-h, h, -h, h)``. Default:
            Playground's ``[-6, 6]`` square (:data:`DOMAIN`).
    """

    name: str
    noise: float | None
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    extent: Extent = PLAYGROUND_EXTENT

    def __post_init__(self) -> None:
        x_train, y_train = _points(self.x_train, self.y_train, "train")
        x_test, y_test = _points(self.x_test, self.y_test, "test")
        for field, value in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test),
                             ("y_test", y_test), ("extent", as_extent(self.extent))):
            object.__setattr__(self, field, value)

    @classmethod
    def from_arrays(cls, x: Any, y: Any, *, test_fraction: float = 0.5, seed: int = 0,
                    labels: str | Sequence[Any] = "auto",
                    extent: float | Sequence[float] | None = None, name: str = "arrays") -> Dataset:
        """Your own two-dimensional points (scikit-learn's ``make_moons``, say), shuffled and split.

        As :func:`make_dataset`, the points are shuffled once (with ``seed``) and split into
        training and test points; training visits them in that order.

        Playground's initial weights suit coordinates of a few units, as on its ``[-6, 6]``
        plane; points on a very different scale train better once standardised.

        Args:
            x: coordinates ``(N, 2)``: a numpy array, a list of pairs or a torch tensor.
            y: ``N`` labels of two classes, of any kind (numbers, strings, booleans).
            test_fraction: share of the points kept for testing, in (0, 1) (rounded so that
                the test set gets ``ceil(N * test_fraction)`` points, as scikit-learn's
                ``train_test_split``).
            seed: seeds the shuffle.
            labels: how the two classes become -1 and +1: ``"auto"``, the smaller of the two
                distinct values becomes -1 and the larger +1 (0/1 and False/True become
                -1/+1; -1/+1 stay); ``"pm1"``, the labels must already be -1 and +1; or a
                pair ``(negative, positive)`` naming the value that becomes -1 and the one
                that becomes +1.
            extent: the plane the figures show (see :func:`as_extent`); default: a square
                around all the points (:func:`extent_around`).
            name: how figures name the data.

        Returns:
            The :class:`Dataset` (``noise`` is ``None``).

        Raises:
            ValueError: one line saying what is wrong and what to do: ``x`` not ``(N, 2)``
                or not finite, a label count other than ``N``, fewer or more than two
                classes, labels outside ``labels``, a ``test_fraction`` outside (0, 1).
        """
        try:
            x = np.asarray(_numpy(x), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("x: coordinates must be numbers") from None
        if x.ndim != 2 or x.shape[1] != 2:
            transposed = x.ndim == 2 and len(x) == 2
            hint = "; if each row is one coordinate, pass x.T" if transposed else ""
            raise ValueError("x must have shape (N, 2), one row (x1, x2) per point as "
                             f"Playground's two inputs; got shape {x.shape}{hint}")
        y = _numpy(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (len(x),):
            raise ValueError(f"y must hold one label per point, shape ({len(x)},); "
                             f"got shape {y.shape}")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        if not np.isfinite(x).all():
            raise ValueError("x: coordinates must be finite (found NaN or infinity)")
        y = _two_classes(y, labels)
        n = len(x)
        n_test = min(max(math.ceil(n * test_fraction - 1e-9), 1), n - 1)
        perm = np.random.default_rng((seed, 6)).permutation(n)
        x, y = x[perm], y[perm]
        split = n - n_test
        return cls(name, None, seed, x[:split], y[:split], x[split:], y[split:],
                   extent_around(x) if extent is None else extent)


def _two_classes(y: np.ndarray, labels: str | Sequence[Any]) -> np.ndarray:
    """Labels of two classes as -1.0 and +1.0, as :meth:`Dataset.from_arrays` describes."""
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError("y: some labels are NaN; drop the points without a label")
    found = _distinct(y, "y")
    if isinstance(labels, str) and labels == "pm1":
        check_labels(y, "y")
        negative, positive = -1.0, 1.0
    elif isinstance(labels, str) and labels == "auto":
        if len(found) > 2:
            raise ValueError(f"y holds {len(found)} classes {_shown(found)}; Playground's network "
                             "separates two: keep two of them, e.g. keep = np.isin(y, [a, b]) and "
                             "pass x[keep], y[keep]")
        negative, positive = found[0], found[-1]
    elif isinstance(labels, (tuple, list)) and len(labels) == 2 and labels[0] != labels[1]:
        negative, positive = labels
        other = found[~np.isin(found, list(labels))]
        if len(other):
            raise ValueError(f"y holds values {_shown(other)} outside labels=({negative!r}, "
                             f"{positive!r}); drop those points or name the classes to keep")
    else:
        raise ValueError("labels must be 'auto', 'pm1' or a pair (negative, positive); "
                         f"got {labels!r}")
    if len(found) < 2:
        raise ValueError(f"y holds a single class {_shown(found)}; Playground's network needs "
                         "points of two classes")
    return np.where(y == positive, 1.0, -1.0)


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
