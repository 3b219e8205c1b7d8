"""MNIST as in-memory tensors: read once, checked, normalised once, split once.

`mnist(split)` returns ``(images, labels)`` for ``split`` in ``train``/``val``/``test``:
images are float32 of shape ``(N, 1, 28, 28)``, normalised with the training split's
mean and standard deviation; labels are int64. The 60,000 official training images are
split by a fixed, seeded permutation into 55,000 for training and 5,000 for validation.

The files are found under ``$NNLAB_DATA/MNIST/raw`` (torchvision's layout), else under
``~/.cache/nnlab``; where neither holds them, torchvision downloads them. Every failure
(no files offline, a truncated file, a wrong magic number or count) raises
:class:`MNISTError` with one message that names the path, the expected files and
``NNLAB_DATA``.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "val", "test")
VAL_SIZE = 5_000
SPLIT_SEED = 0
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10

# name -> (magic number, item count, item shape)
FILES = {
    "train-images-idx3-ubyte": (2051, 60_000, (28, 28)),
    "train-labels-idx1-ubyte": (2049, 60_000, ()),
    "t10k-images-idx3-ubyte": (2051, 10_000, (28, 28)),
    "t10k-labels-idx1-ubyte": (2049, 10_000, ()),
}


class MNISTError(RuntimeError):
    """MNIST could not be found, downloaded or read."""


def data_root() -> Path:
    """The folder that holds ``MNIST/raw``: ``$NNLAB_DATA``, else ``~/.cache/nnlab``."""
    env = os.environ.get("NNLAB_DATA")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "nnlab"


def _problem(msg: str, raw: Path) -> MNISTError:
    expected = ", ".join(FILES)
    return MNISTError(
        f"{msg}. Expected the MNIST files {expected} in {raw}. "
        "Set NNLAB_DATA to the folder that contains MNIST/raw "
        "(e.g. `export NNLAB_DATA=../shared/data`) or connect to the internet once to download them."
    )


def read_idx(path: Path, magic: int, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file (optionally gzipped), checking magic number, count and size."""
    raw = path.parent
    try:
        data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise _problem(f"Cannot read {path} ({exc})", raw) from None
    if len(data) < 8:
        raise _problem(f"{path} is truncated ({len(data)} bytes)", raw)
    found_magic = int.from_bytes(data[0:4], "big")
    if found_magic != magic:
        raise _problem(f"{path} has magic number {found_magic}, expected {magic}: "
                       "not an MNIST IDX file or corrupt", raw)
    found_count = int.from_bytes(data[4:8], "big")
    if found_count != count:
        raise _problem(f"{path} holds {found_count} items, expected {count}", raw)
    header = 8 + 4 * len(shape)
    expected_size = header + count * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_size:
        raise _problem(f"{path} is {len(data)} bytes, expected {expected_size} "
                       "(truncated or corrupt download)", raw)
    dims = tuple(int.from_bytes(data[8 + 4 * i: 12 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise _problem(f"{path} has item shape {dims}, expected {shape}", raw)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape((count, *shape))


def _locate(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(root: Path) -> None:
    """Fetch MNIST with torchvision; any failure becomes one clear MNISTError."""
    raw = root / "MNIST" / "raw"
    try:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises many kinds; the reader needs one message
        raise _problem(f"MNIST is not in {raw} and downloading it failed "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                       raw) from None


@functools.lru_cache(maxsize=None)
def raw_arrays(root: str | None = None) -> dict[str, np.ndarray]:
    """The four MNIST arrays as uint8 numpy arrays, keyed by file name (read once)."""
    base = Path(root).expanduser().resolve() if root else data_root()  # as data_root() reads it
    raw = base / "MNIST" / "raw"
    if any(_locate(raw, name) is None for name in FILES):
        _download(base)
    arrays = {}
    for name, (magic, count, shape) in FILES.items():
        path = _locate(raw, name)
        if path is None:
            raise _problem(f"{raw / name} is missing", raw)
        arrays[name] = read_idx(path, magic, count, shape)
    return arrays


def split_indices(n: int = 60_000, val_size: int = VAL_SIZE, seed: int = SPLIT_SEED
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed train/validation split of the official training set: (train_idx, val_idx)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


@functools.lru_cache(maxsize=None)
def raw_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` for a split as stored: uint8 ``(N, 28, 28)`` and int64 ``(N,)``."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    arrays = raw_arrays(os.environ.get("NNLAB_DATA"))
    if split == "test":
        images, labels = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
    images = torch.from_numpy(arrays["train-images-idx3-ubyte"].copy())
    labels = torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64))
    train_idx, val_idx = split_indices()
    idx = train_idx if split == "train" else val_idx
    return images[idx], labels[idx]


@functools.lru_cache(maxsize=None)
def normalisation() -> tuple[float, float]:
    """Mean and standard deviation of training-split pixels scaled to [0, 1]."""
    images, _ = raw_split("train")
    x = images.double() / 255.0
    return float(x.mean()), float(x.std())


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, zero mean, unit std."""
    mean, std = normalisation()
    return ((images_uint8.float() / 255.0 - mean) / std).unsqueeze(1)


@functools.lru_cache(maxsize=None)
def mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a split, normalised once and cached in memory.

    Args:
        split: ``"train"`` (55,000), ``"val"`` (5,000) or ``"test"`` (10,000).

    Returns:
        float32 images ``(N, 1, 28, 28)`` and int64 labels ``(N,)``.

    Raises:
        ValueError: unknown split.
        MNISTError: the files are missing, damaged, or cannot be downloaded.
    """
    images, labels = raw_split(split)
    return normalise(images), labels


def clear_cache() -> None:
    """Forget loaded data (after changing ``NNLAB_DATA``)."""
    for fn in (raw_arrays, raw_split, normalisation, mnist):
        fn.cache_clear()


def class_counts(split: str) -> torch.Tensor:
    """Number of images of each digit 0-9 in a split."""
    return torch.bincount(raw_split(split)[1], minlength=NUM_CLASSES)


def torchvision_item(index: int = 0, train: bool = True) -> dict:
    """How one item of ``torchvision.datasets.MNIST`` (with ``ToTensor``) is structured.

    Returns a dict with the item's Python type, its length, the image tensor's type, shape,
    dtype and value range, and the label's type and value.
    """
    from torchvision import transforms
    from torchvision.datasets import MNIST

    raw_arrays(os.environ.get("NNLAB_DATA"))  # fail here with our message if the files are absent
    ds = MNIST(str(data_root()), train=train, download=False, transform=transforms.ToTensor())
    item = ds[index]
    image, label = item
    return {"item_type": type(item).__name__, "item_len": len(item), "image_type": type(image).__name__,
            "image_shape": tuple(image.shape), "image_dtype": str(image.dtype).replace("torch.", ""),
            "image_min": float(image.min()), "image_max": float(image.max()),
            "label_type": type(label).__name__, "label": int(label), "dataset_len": len(ds)}


def facts() -> dict:
    """The numbers the data chapter reports, computed from the files."""
    import torchvision

    train_x, _ = raw_split("train")
    norm_train, _ = mnist("train")
    mean, std = normalisation()
    return {
        "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
        "height": int(train_x.shape[1]), "width": int(train_x.shape[2]),
        "n_train": len(train_x), "n_val": len(raw_split("val")[0]), "n_test": len(raw_split("test")[0]),
        "n_official_train": 60_000, "raw_min": int(train_x.min()), "raw_max": int(train_x.max()),
        "mean": mean, "std": std, "norm_min": float(norm_train.min()), "norm_max": float(norm_train.max()),
        "frac_zero": float((train_x == 0).double().mean()),
    }
