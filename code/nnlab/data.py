"""Data sources: what an experiment trains on, as a value that travels with it.

A :class:`DataSource` serves ``(inputs, labels)`` tensors for the splits ``train``, ``val``
and (optionally) ``test``, normalised once and held in memory, and says what it is:
:meth:`~DataSource.describe` is plain JSON that goes into every result's hash, so a result
trained on other data is never mistaken for this one. Built in:

* :data:`MNIST`, :func:`fashion_mnist`, :func:`kmnist`: torchvision's IDX files, found under
  ``$NNLAB_DATA/<NAME>/raw`` (torchvision's layout), else under ``~/.cache/nnlab``, and
  downloaded by torchvision where neither holds them and a network exists. The 60,000
  official training images are split by a fixed, seeded permutation into 55,000 for
  training and 5,000 for validation; images are float32 ``(N, 1, 28, 28)`` normalised with
  the training split's mean and standard deviation.
* :class:`ArrayData`: any arrays (numpy or torch), e.g. scikit-learn's bundled digits, with
  a seeded validation split carved from the training arrays when none is given; integer
  labels for classification, or float targets of any shape for a regression.
* :func:`from_dataset`: a map-style ``torch.utils.data.Dataset`` read once into an
  :class:`ArrayData`, when it fits in memory (it is refused, in one line, before it is read
  when it does not).

Every source is held in memory: the training loop draws each batch from tensors by index
(see :mod:`nnlab.train`), which is what makes it fast, and the data's sha256 is part of the
result's hash. A course with a ``Dataset`` of its own therefore either passes it to
:func:`from_dataset`, or writes a :class:`DataSource` whose :meth:`~DataSource.load` returns
the tensors of a split (stacking the dataset's items) and whose
:meth:`~DataSource.describe` names it. Data larger than memory is outside what nnlab's loop
does; a course trains such data with a loop of its own.

Every failure to find or read files (no files offline, a truncated file, a wrong magic
number or count) raises :class:`DataError` with one message that names the path, the
expected files and ``NNLAB_DATA``. ``mnist(split)`` and the other module-level functions are
the MNIST source's, as the book uses them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnlab.fileio import json_hash

SPLITS = ("train", "val", "test")
VAL_SIZE = 5_000
SPLIT_SEED = 0
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
TORCHVISION_IDX = ("MNIST", "FashionMNIST", "KMNIST")  # same file names and layout

# name -> (magic number, item count, item shape)
FILES = {
    "train-images-idx3-ubyte": (2051, 60_000, (28, 28)),
    "train-labels-idx1-ubyte": (2049, 60_000, ()),
    "t10k-images-idx3-ubyte": (2051, 10_000, (28, 28)),
    "t10k-labels-idx1-ubyte": (2049, 10_000, ()),
}


# md5 of the four MNIST files' content (as unpacked from the published .gz archives, whose
# own md5 torchvision lists in MNIST.resources): a file with any other content is refused.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class DataError(RuntimeError):
    """Data could not be found, downloaded or read, or does not make sense."""


MNISTError = DataError  # the name the book has always used


class DataSource:
    """What an experiment trains on. Subclasses set ``input_shape`` (one input, without the
    batch axis), ``num_classes`` and ``name``, and implement :meth:`describe` and :meth:`load`.

    A source must pickle (worker processes receive it by value) and must be deterministic:
    two calls of :meth:`load` in two processes give the same tensors.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int

    def describe(self) -> dict:
        """Plain JSON that identifies the data (goes into every result's hash)."""
        raise NotImplementedError

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 inputs ``(N, *input_shape)`` and int64 labels ``(N,)`` of one split (for a
        regression: float targets ``(N, ...)``, and ``num_classes`` is the number of outputs
        per sample)."""
        raise NotImplementedError

    def has_split(self, split: str) -> bool:
        return split in SPLITS

    def fingerprint(self) -> str:
        """A checksum of the data itself, stored with every run: a stored run whose data's
        fingerprint has changed since is stale, even where :meth:`describe` has not (the
        source's code changed). Not part of the hash, so a source may compute it as it likes
        (MNIST's is its files' checksums). By default, the sha256 of the tensors :meth:`load`
        returns for every split, computed once per process."""
        key = (type(self), json_hash(self.describe(), 64))
        if key not in _FINGERPRINTS:
            _FINGERPRINTS[key] = tensors_sha256(self.splits())
        return _FINGERPRINTS[key]

    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Every split this source has, as the trainer takes them."""
        return {s: self.load(s) for s in SPLITS if self.has_split(s)}

    def __eq__(self, other) -> bool:
        return isinstance(other, DataSource) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.describe().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


_FINGERPRINTS: dict[tuple[type, str], str] = {}  # (source class, description) -> its default fingerprint


def tensors_sha256(splits: dict[str, tuple[torch.Tensor, ...]]) -> str:
    """sha256 of the tensors of every split: their split, dtype, shape and bytes."""
    h = hashlib.sha256()
    for split in sorted(splits):
        for t in splits[split]:
            t = t.detach().cpu().contiguous()
            h.update(f"{split}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")


# --------------------------------------------------------------------------------------
# torchvision's IDX data sets: MNIST, FashionMNIST, KMNIST

def data_root() -> Path:
    """The folder that holds ``<NAME>/raw``: ``$NNLAB_DATA``, else ``~/.cache/nnlab``."""
    env = os.environ.get("NNLAB_DATA")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "nnlab"


def _problem(msg: str, raw: Path, dataset: str = "MNIST") -> DataError:
    expected = ", ".join(FILES)
    return DataError(
        f"{msg}. Expected the {dataset} files {expected} in {raw}. "
        f"Set NNLAB_DATA to the folder that contains {dataset}/raw "
        "(e.g. `export NNLAB_DATA=../shared/data`) or connect to the internet once to download them."
    )


def _content(path: Path, dataset: str) -> bytes:
    """The bytes of an IDX file, unpacked if it is gzipped."""
    try:
        return gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise _problem(f"Cannot read {path} ({exc})", path.parent, dataset) from None


def read_idx(path: Path, magic: int, count: int, shape: tuple[int, ...], dataset: str = "MNIST",
             data: bytes | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped; or its ``data`` already read), checking magic
    number, count and size."""
    raw = path.parent
    if data is None:
        data = _content(path, dataset)
    if len(data) < 8:
        raise _problem(f"{path} is truncated ({len(data)} bytes)", raw, dataset)
    found_magic = int.from_bytes(data[0:4], "big")
    if found_magic != magic:
        raise _problem(f"{path} has magic number {found_magic}, expected {magic}: "
                       "not an IDX file of this data set, or corrupt", raw, dataset)
    found_count = int.from_bytes(data[4:8], "big")
    if found_count != count:
        raise _problem(f"{path} holds {found_count} items, expected {count}", raw, dataset)
    header = 8 + 4 * len(shape)
    expected_size = header + count * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_size:
        raise _problem(f"{path} is {len(data)} bytes, expected {expected_size} "
                       "(truncated or corrupt download)", raw, dataset)
    dims = tuple(int.from_bytes(data[8 + 4 * i: 12 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise _problem(f"{path} has item shape {dims}, expected {shape}", raw, dataset)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape((count, *shape))


def _locate(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(root: Path, dataset: str) -> None:
    """Fetch a data set with torchvision; any failure becomes one clear DataError. A folder
    named by ``NNLAB_DATA`` that does not exist is not created: it is named as missing."""
    raw = root / dataset / "raw"
    if os.environ.get("NNLAB_DATA") and not root.is_dir():
        raise _problem(f"NNLAB_DATA names {root}, which does not exist (nothing was created there)", raw, dataset)
    try:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, dataset)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises many kinds; the reader needs one message
        cause = " ".join(str(exc).split()) or "no message"  # the whole cause, on one line
        raise _problem(f"{dataset} is not in {raw} and downloading it failed ({type(exc).__name__}: {cause})",
                       raw, dataset) from None


@functools.lru_cache(maxsize=None)
def _idx_paths(dataset: str, root: str | None) -> dict[str, Path]:
    base = Path(root).expanduser().resolve() if root else data_root()  # as data_root() reads it
    raw = base / dataset / "raw"
    if any(_locate(raw, name) is None for name in FILES):
        _download(base, dataset)
    paths = {}
    for name in FILES:
        path = _locate(raw, name)
        if path is None:
            raise _problem(f"{raw / name} is missing", raw, dataset)
        paths[name] = path
    return paths


@functools.lru_cache(maxsize=None)
def _idx_read(dataset: str, root: str | None) -> tuple[dict[str, np.ndarray], str]:
    """The four arrays, checked, and the fingerprint of what was read (name:md5 of each
    file's unpacked content, which for MNIST must equal the published files' md5)."""
    arrays, digests = {}, []
    for name, path in _idx_paths(dataset, root).items():
        magic, count, shape = FILES[name]
        content = _content(path, dataset)
        arrays[name] = read_idx(path, magic, count, shape, dataset, data=content)
        digest = hashlib.md5(content).hexdigest()
        expected = MNIST_MD5.get(name) if dataset == "MNIST" else None
        if expected is not None and digest != expected:
            raise _problem(f"{path} holds data with md5 {digest}, not MNIST's {expected}: the file is "
                           "altered or corrupt; delete it to download it again, or restore the original",
                           path.parent, dataset)
        digests.append(f"{name}:{digest}")
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        top = int(arrays[name].max())
        if top >= NUM_CLASSES:
            path = _idx_paths(dataset, root)[name]
            raise _problem(f"{path} holds label {top}, but {dataset} has {NUM_CLASSES} classes "
                           "(corrupt label file)", path.parent, dataset)
    return arrays, ",".join(digests)


def idx_arrays(dataset: str = "MNIST", root: str | None = None) -> dict[str, np.ndarray]:
    """The four IDX arrays of a torchvision data set as uint8 numpy arrays, keyed by file
    name (read and checked once per process)."""
    return _idx_read(dataset, root)[0]


def raw_arrays(root: str | None = None) -> dict[str, np.ndarray]:
    """The four MNIST arrays (see :func:`idx_arrays`)."""
    return idx_arrays("MNIST", root)


def split_indices(n: int = 60_000, val_size: int = VAL_SIZE, seed: int = SPLIT_SEED
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/validation split of ``n`` items: (train_idx, val_idx), each sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


@dataclass(frozen=True, eq=False, repr=False)
class TorchvisionIDX(DataSource):
    """MNIST and its drop-in relatives (FashionMNIST, KMNIST): 28x28 grey images, 10 classes.

    Attributes:
        dataset: torchvision's class name, also the folder under ``$NNLAB_DATA``.
        val_size: images of the official training set held out for validation.
        split_seed: seed of the permutation that chooses them.
    """

    dataset: str = "MNIST"
    val_size: int = VAL_SIZE
    split_seed: int = SPLIT_SEED

    input_shape = IMAGE_SHAPE
    num_classes = NUM_CLASSES

    def __post_init__(self) -> None:
        if self.dataset not in TORCHVISION_IDX:
            raise ValueError(f"unknown data set {self.dataset!r}; choose one of {', '.join(TORCHVISION_IDX)} "
                             "or bring your own arrays with nnlab.data.ArrayData")
        if not 0 < self.val_size < 60_000:
            raise ValueError(f"val_size must be between 1 and 59,999, got {self.val_size!r}")

    @property
    def name(self) -> str:
        return self.dataset

    def describe(self) -> dict:
        return {"dataset": self.dataset, "val_size": self.val_size, "split_seed": self.split_seed}

    def fingerprint(self) -> str:
        """md5 of the content of each of the four files read, as ``name:md5`` joined by commas."""
        return _idx_read(self.dataset, os.environ.get("NNLAB_DATA"))[1]

    def raw_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` as stored: uint8 ``(N, 28, 28)`` and int64 ``(N,)``."""
        return _raw_split(self.dataset, self.val_size, self.split_seed, split)

    def normalisation(self) -> tuple[float, float]:
        """Mean and standard deviation of training-split pixels scaled to [0, 1]."""
        return _normalisation(self.dataset, self.val_size, self.split_seed)

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, zero mean, unit std."""
        mean, std = self.normalisation()
        return ((images_uint8.float() / 255.0 - mean) / std).unsqueeze(1)

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return _normalised(self.dataset, self.val_size, self.split_seed, split)


@functools.lru_cache(maxsize=None)
def _raw_split(dataset: str, val_size: int, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    _check_split(split)
    arrays = idx_arrays(dataset, os.environ.get("NNLAB_DATA"))
    if split == "test":
        images, labels = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
    images = torch.from_numpy(arrays["train-images-idx3-ubyte"].copy())
    labels = torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64))
    train_idx, val_idx = split_indices(len(images), val_size, seed)
    idx = train_idx if split == "train" else val_idx
    return images[idx], labels[idx]


@functools.lru_cache(maxsize=None)
def _normalisation(dataset: str, val_size: int, seed: int) -> tuple[float, float]:
    images, _ = _raw_split(dataset, val_size, seed, "train")
    x = images.double() / 255.0
    return float(x.mean()), float(x.std())


@functools.lru_cache(maxsize=None)
def _normalised(dataset: str, val_size: int, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    source = TorchvisionIDX(dataset, val_size, seed)
    images, labels = source.raw_split(split)
    return source.normalise(images), labels


MNIST = TorchvisionIDX("MNIST")


def fashion_mnist(val_size: int = VAL_SIZE, split_seed: int = SPLIT_SEED) -> TorchvisionIDX:
    """Zalando's Fashion-MNIST (Xiao et al. 2017): ten kinds of clothing, MNIST's layout."""
    return TorchvisionIDX("FashionMNIST", val_size, split_seed)


def kmnist(val_size: int = VAL_SIZE, split_seed: int = SPLIT_SEED) -> TorchvisionIDX:
    """Kuzushiji-MNIST (Clanuwat et al. 2018): ten cursive Japanese characters, MNIST's layout."""
    return TorchvisionIDX("KMNIST", val_size, split_seed)


def raw_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``(images, labels)`` of a split as stored: uint8 ``(N, 28, 28)``, int64 ``(N,)``."""
    return MNIST.raw_split(split)


def normalisation() -> tuple[float, float]:
    """Mean and standard deviation of MNIST's training-split pixels scaled to [0, 1]."""
    return MNIST.normalisation()


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 MNIST images ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, zero mean, unit std."""
    return MNIST.normalise(images_uint8)


def mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of an MNIST split, normalised once and cached in memory.

    Args:
        split: ``"train"`` (55,000), ``"val"`` (5,000) or ``"test"`` (10,000).

    Returns:
        float32 images ``(N, 1, 28, 28)`` and int64 labels ``(N,)``.

    Raises:
        ValueError: unknown split.
        DataError: the files are missing, damaged, or cannot be downloaded.
    """
    return MNIST.load(split)


def clear_cache() -> None:
    """Forget loaded data (after changing ``NNLAB_DATA``)."""
    for fn in (_idx_paths, _idx_read, _raw_split, _normalisation, _normalised):
        fn.cache_clear()
    _FINGERPRINTS.clear()


# --------------------------------------------------------------------------------------
# Arrays

def _as_numpy(a, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except Exception as exc:
        raise DataError(f"{what} must be a numpy array or a torch tensor, got {type(a).__name__} ({exc})") from None


def target_kind(y) -> str:
    """``classes`` for integer labels (and whole-number floats of one axis, read as labels as
    ever), ``values`` for other float targets: what :class:`ArrayData` infers."""
    y = _as_numpy(y, "targets")
    if np.issubdtype(y.dtype, np.floating) and (y.ndim != 1 or not np.all(np.mod(y, 1) == 0)):
        return "values"
    return "classes"


def _values(y: np.ndarray, n: int, split: str) -> np.ndarray:
    """Float targets of a regression: one array of any shape per input, finite."""
    if len(y) != n or y.ndim < 1:
        raise DataError(f"{split} targets must have one entry per input: {n} inputs but targets of shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise DataError(f"{split} targets must be floating-point values for regression, got dtype {y.dtype}: "
                        "convert them (y.astype('float32')), or learn them as classes (targets='classes')")
    if not np.isfinite(y).all():
        raise DataError(f"{split} targets hold NaN or infinite values; clean them before training")
    return np.ascontiguousarray(y.astype(np.float32))


def _pair(pair, split: str, targets: str = "classes") -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise DataError(f"the {split} split must be a pair (inputs, labels), got {type(pair).__name__}")
    x, y = _as_numpy(pair[0], f"{split} inputs"), _as_numpy(pair[1], f"{split} labels")
    if x.ndim < 2:
        raise DataError(f"{split} inputs must have a sample axis and at least one feature axis, "
                        f"got shape {x.shape}")
    if targets == "values":
        return _inputs(x, split), _values(y, len(x), split)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{split} labels must be one integer per input: {len(x)} inputs but labels of "
                        f"shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{split} labels must be class indices 0..K-1 (integers), got dtype {y.dtype}")
    return _inputs(x, split), y.astype(np.int64)


def _inputs(x: np.ndarray, split: str) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{split} inputs must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if x.ndim == 3:  # (N, H, W) grey images get their channel axis
        x = x[:, None]
    if not np.isfinite(x).all():
        raise DataError(f"{split} inputs hold NaN or infinite values; clean them before training")
    return np.ascontiguousarray(x)


def _held_out(pair: tuple[np.ndarray, np.ndarray], val_size: float | int, split_seed: int) -> dict:
    """The training pair split into ``train`` and a seeded ``val`` of ``val_size`` samples."""
    x, y = pair
    n = len(x)
    k = int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 < k < n:
        raise DataError(f"val_size={val_size!r} leaves no training or no validation data out of {n} "
                        "samples; give a fraction in (0, 1), a count, or a val split")
    train_idx, val_idx = split_indices(n, k, split_seed)
    return {"train": (x[train_idx.numpy()], y[train_idx.numpy()]), "val": (x[val_idx.numpy()], y[val_idx.numpy()])}


def _classes(arrays: dict, num_classes: int | None) -> int:
    """The number of classes of integer labels, checked against ``num_classes`` if given."""
    top = max(int(a[1].max()) for a in arrays.values() if len(a[1]))
    low = min(int(a[1].min()) for a in arrays.values() if len(a[1]))
    classes = top + 1 if num_classes is None else int(num_classes)
    if low < 0 or top >= classes:
        raise DataError(f"labels must lie in 0..{classes - 1} ({classes} classes), found {low}..{top}; "
                        "map them to class indices (or give num_classes; or, for a regression's float targets, "
                        "targets='values')")
    return classes


def _target_shape(arrays: dict) -> tuple[int, ...]:
    shapes = {s: a[1].shape[1:] for s, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"all splits must have targets of one shape, got {shapes}")
    return tuple(int(d) for d in shapes["train"])


class ArrayData(DataSource):
    """Data from arrays (numpy or torch): vectors ``(N, D)``, grey images ``(N, H, W)`` or
    images ``(N, C, H, W)``, with integer labels ``0..K-1``, or float targets of any shape
    ``(N, ...)`` for a regression (``TrainConfig(task="regression")``).

    ``targets`` says which: ``classes`` or ``values``; by default integer labels (and
    whole-number floats of one axis) are classes and other floats are values, so a
    regression whose targets happen to be whole numbers (scikit-learn's diabetes) says
    ``targets="values"``. For values, ``num_classes`` is the number of outputs per sample
    (the product of ``target_shape``) and :meth:`describe` holds ``targets`` instead of
    ``classes``.

    Without ``val``, a seeded random ``val_size`` of the training arrays is held out for
    validation (a fraction below 1, or a count). ``test`` is optional: without it a run
    reports no test accuracy. Inputs are standardised with the training split's statistics
    (per channel for images, per feature for vectors; a constant feature is only centred);
    ``normalise=False`` keeps them as given.

    :meth:`describe` holds the name, the shapes, the number of classes and a sha256 of every
    array, so results trained on other arrays never pass for these. The arrays live in
    memory; for a ``torch.utils.data.Dataset`` see :func:`from_dataset`.

    Example::

        from sklearn.datasets import load_digits
        x, y = load_digits(return_X_y=True)
        digits = ArrayData("sklearn-digits", train=(x[:1500].reshape(-1, 8, 8), y[:1500]),
                           test=(x[1500:].reshape(-1, 8, 8), y[1500:]))
    """

    def __init__(self, name: str, train, val=None, test=None, *, num_classes: int | None = None,
                 val_size: float | int = 0.1, split_seed: int = 0, normalise: bool = True,
                 description: str = "", targets: str | None = None):
        if not isinstance(name, str) or not name.strip():
            raise DataError("ArrayData needs a name (it identifies the data in stored results)")
        if targets not in (None, "classes", "values"):
            raise DataError(f"targets must be 'classes' (integer labels) or 'values' (float targets of a "
                            f"regression), got {targets!r}")
        kind = targets or (target_kind(train[1]) if isinstance(train, (tuple, list)) and len(train) == 2
                           else "classes")
        arrays = {"train": _pair(train, "train", kind)}
        if val is None:
            arrays.update(_held_out(arrays["train"], val_size, split_seed))
        else:
            arrays["val"] = _pair(val, "val", kind)
        if test is not None:
            arrays["test"] = _pair(test, "test", kind)
        shapes = {s: a[0].shape[1:] for s, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise DataError(f"all splits must have inputs of one shape, got {shapes}")
        self.targets = kind
        if kind == "values":
            self.target_shape = _target_shape(arrays)
            self.num_classes = int(np.prod(self.target_shape, dtype=np.int64))  # outputs per sample
        else:
            self.target_shape = ()
            self.num_classes = _classes(arrays, num_classes)
        self.name = name
        self.input_shape = tuple(int(d) for d in shapes["train"])
        self.normalise_inputs = bool(normalise)
        self.split_seed = split_seed
        self.description = description
        self._arrays = arrays
        h = hashlib.sha256()
        for split in sorted(arrays):
            for a in arrays[split]:
                h.update(f"{split}:{a.dtype}:{a.shape}".encode() + a.tobytes())
        self._sha256 = h.hexdigest()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def describe(self) -> dict:
        d = {"dataset": self.name, "input_shape": list(self.input_shape), "classes": self.num_classes,
             "sizes": {s: len(a[1]) for s, a in self._arrays.items()}, "normalise": self.normalise_inputs,
             "sha256": self._sha256}
        if self.targets == "values":  # no classes: what a regression's targets look like instead
            del d["classes"]
            d["targets"] = {"kind": "values", "shape": list(self.target_shape)}
        if self.description:
            d["description"] = self.description
        return d

    def has_split(self, split: str) -> bool:
        return split in self._arrays

    def fingerprint(self) -> str:
        return self._sha256

    def _statistics(self) -> tuple[np.ndarray, np.ndarray]:
        x = self._arrays["train"][0].astype(np.float64)
        axes = (0,) if x.ndim == 2 else (0, *range(2, x.ndim))  # per feature, or per channel
        mean, std = x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True)
        return mean, np.where(std > 0, std, 1.0)

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        _check_split(split)
        if split not in self._arrays:
            raise DataError(f"data {self.name!r} has no {split} split; give one to ArrayData({split}=...)")
        if split not in self._cache:
            x, y = self._arrays[split]
            if self.normalise_inputs:
                mean, std = self._statistics()
                x = ((x - mean) / std).astype(np.float32)
            self._cache[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
        return self._cache[split]

    def __getstate__(self) -> dict:  # workers get the arrays, not the tensors made from them
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _cache={})


def as_splits(data, targets: str = "classes") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """What the trainer takes: a :class:`DataSource`, or a dict ``{"train": (x, y), "val":
    (x, y), "test": (x, y)}`` of numpy arrays or tensors (``test`` optional), checked.
    ``targets`` is what the task learns: ``classes`` (int64 labels) or ``values`` (float
    targets, served as float32)."""
    if isinstance(data, DataSource):
        splits = data.splits()
        if targets == "values":
            splits = {s: (x, y.float() if y.is_floating_point() else y) for s, (x, y) in splits.items()}
        return splits
    if _is_torch_dataset(data):
        raise DataError(f"data is a {type(data).__name__} (a torch Dataset): nnlab trains from tensors held in "
                        "memory; turn it into a DataSource with nnlab.data.from_dataset(name, train=..., val=...), "
                        "which refuses data too large for this machine's memory")
    if not isinstance(data, dict):
        raise DataError(f"data must be a DataSource or a dict of (inputs, labels) pairs, got {type(data).__name__}")
    unknown = set(data) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split(s) {sorted(unknown)}; the splits are {', '.join(SPLITS)}")
    if "train" not in data:
        raise DataError("data has no 'train' split")
    out = {}
    for split, pair in data.items():
        if isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair):
            x, y = pair
            if targets == "values":
                y = y.float() if y.is_floating_point() else y  # the task refuses integer labels by name
            elif y.dtype != torch.int64 and not (y.is_floating_point() and bool((y != y.round()).any())):
                y = y.long()  # whole numbers as labels; fractions are left for the task to refuse by name
            out[split] = (x if x.is_floating_point() else x.float(), y)
        else:
            x, y = _pair(pair, split, targets)
            out[split] = (torch.from_numpy(x), torch.from_numpy(y))
    return out


# --------------------------------------------------------------------------------------
# torch Datasets, held in memory

MEMORY_SHARE = 0.5  # the most of the available memory that from_dataset lets the tensors take


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's ``MemAvailable``; elsewhere the
    physical memory), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _is_torch_dataset(data) -> bool:
    try:
        from torch.utils.data import Dataset
    except ImportError:  # pragma: no cover - torch always has it
        return False
    return isinstance(data, Dataset)


def _dataset_arrays(dataset, split: str, budget: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(input, target)`` item of a map-style dataset, stacked, after checking that
    ``len(dataset)`` items of the first one's size fit in ``budget`` bytes."""
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise DataError(f"the {split} dataset is a {type(dataset).__name__} without __len__ and __getitem__: "
                        "nnlab needs a map-style Dataset (an IterableDataset cannot be held in memory by index)")
    n = len(dataset)
    if n == 0:
        raise DataError(f"the {split} dataset is empty")
    first = [_as_numpy(t, f"{split} item") for t in dataset[0]]
    need = n * sum(a.astype(np.float32).nbytes if a.dtype != np.int64 else a.nbytes for a in first)
    if budget is not None and need > budget:
        raise DataError(f"the {split} dataset needs about {need / 2**30:.2f} GiB in memory ({n} items), more than "
                        f"the {budget / 2**30:.2f} GiB nnlab allows itself here: nnlab trains from tensors held in "
                        "memory, so subsample it, shrink its items, or train it with a loop of your own")
    items = [first] + [[_as_numpy(t, f"{split} item") for t in dataset[i]] for i in range(1, n)]
    return np.stack([i[0] for i in items]), np.stack([i[1] for i in items])


def from_dataset(name: str, train, val=None, test=None, *, max_bytes: int | None = None, **kwargs) -> ArrayData:
    """A :class:`ArrayData` made of the items of map-style ``torch.utils.data.Dataset`` s
    (each item an ``(input, target)`` pair of tensors or arrays), when they fit in memory.

    nnlab's loop draws its batches from tensors held in memory (see :mod:`nnlab.train`), so
    a dataset is read once, item by item, and stacked; everything else is as for
    :class:`ArrayData` (``kwargs``: ``targets``, ``val_size``, ``normalise``, ...), hashes
    included: the result's hash covers the stacked arrays' sha256. Data that would take more
    than ``max_bytes`` (default: half the memory available now) is refused before it is read,
    in one line that says so. Data larger than memory needs a loop of its own: the
    ``nnlab.train.train`` loop does not stream.
    """
    budget = max_bytes if max_bytes is not None else (
        None if (free := available_memory()) is None else int(free * MEMORY_SHARE))
    pairs = {s: (_dataset_arrays(d, s, budget) if _is_torch_dataset(d) else d)
             for s, d in (("train", train), ("val", val), ("test", test)) if d is not None}
    return ArrayData(name, pairs["train"], pairs.get("val"), pairs.get("test"), **kwargs)
