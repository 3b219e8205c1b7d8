"""The numbers and items the data chapter shows about MNIST, computed from the files."""

from __future__ import annotations

import os

import torch

from nnlab.data import NUM_CLASSES, data_root, mnist, normalisation, raw_arrays, raw_split


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
        "n_official_train": len(raw_arrays()["train-images-idx3-ubyte"]),
        "n_official_test": len(raw_arrays()["t10k-images-idx3-ubyte"]), "raw_min": int(train_x.min()), "raw_max": int(train_x.max()),
        "mean": mean, "std": std, "norm_min": float(norm_train.min()), "norm_max": float(norm_train.max()),
        "frac_zero": float((train_x == 0).double().mean()),
    }


def zero_padding_facts() -> dict:
    """What a padded zero means in the book's normalised images, from the normalisation constants.

    ``background``: the normalised value of an empty pixel, (0 - mean) / std; ``zero_intensity``:
    the [0, 1] intensity that a normalised 0 stands for (the mean pixel), and ``zero_byte`` the
    same on the files' 0-255 scale; ``zero_minus_background``: how far a padded zero lies above
    the background, in units of the normalised pixels' standard deviation.
    """
    mean, std = normalisation()
    background = (0.0 - mean) / std
    return {"background": background, "zero_intensity": mean, "zero_byte": 255 * mean,
            "zero_minus_background": 0.0 - background}
