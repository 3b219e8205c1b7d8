"""nnlab.data: clear errors for missing or damaged MNIST files, the fixed split, normalisation."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlab import data
from nnlab.data import FILES, MNISTError

REAL_RAW = Path(os.environ["NNLAB_DATA"]) / "MNIST" / "raw"


@pytest.fixture
def fresh_cache():
    """Forget loaded MNIST before and after a test that points NNLAB_DATA elsewhere."""
    data.clear_cache()
    yield
    data.clear_cache()


def assert_clear_message(exc: MNISTError, raw: Path) -> None:
    msg = str(exc)
    assert "\n" not in msg.strip()
    assert str(raw) in msg
    assert "NNLAB_DATA" in msg
    for name in FILES:
        assert name in msg
    # the reader sees our message, not a chain of tracebacks from inside torchvision
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_missing_files_offline_give_one_clear_error(tmp_path, monkeypatch, fresh_cache, block_network):
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path))
    tried = len(block_network)
    with pytest.raises(MNISTError) as info:
        data.mnist("train")
    raw = tmp_path / "MNIST" / "raw"
    assert_clear_message(info.value, raw)
    assert "download" in str(info.value)
    # proof that the download was attempted, and refused by the (offline) network
    assert len(block_network) > tried


def test_nnlab_data_with_tilde_is_expanded(tmp_path, monkeypatch, fresh_cache):
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "raw").symlink_to(REAL_RAW)
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    monkeypatch.setenv("NNLAB_DATA", f"~/{tmp_path.name}")
    images, labels = data.raw_split("test")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)


def idx_bytes(magic: int, count: int, shape: tuple[int, ...], payload: bytes | None = None) -> bytes:
    header = magic.to_bytes(4, "big") + count.to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in shape)
    size = count * int(np.prod(shape, dtype=np.int64))
    return header + (payload if payload is not None else bytes(range(256)) * (size // 256) + bytes(size % 256))


def test_read_idx_round_trip(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(2051, 3, (28, 28)))
    arr = data.read_idx(path, 2051, 3, (28, 28))
    assert arr.shape == (3, 28, 28) and arr.dtype == np.uint8
    assert arr.reshape(-1)[:256].tolist() == list(range(256))


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[:-100], "truncated"),
    (lambda b: b[:5], "truncated"),
    (lambda b: (2051).to_bytes(4, "big") + b[4:], "magic number 2051, expected 2049"),
    (lambda b: b[:4] + (9_999).to_bytes(4, "big") + b[8:], "holds 9999 items, expected 10000"),
    (lambda b: b + b"\0", "truncated or corrupt"),
    (lambda b: gzip.compress(b)[:-50], "Cannot read"),
])
def test_damaged_file_names_the_problem(tmp_path, monkeypatch, fresh_cache, damage, words):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    damaged = "t10k-labels-idx1-ubyte"
    for name in FILES:
        if name != damaged:
            (raw / name).symlink_to(REAL_RAW / name)
    original = (REAL_RAW / damaged).read_bytes()
    broken = damage(original)
    target = raw / (damaged + ".gz" if broken[:2] == b"\x1f\x8b" else damaged)
    target.write_bytes(broken)
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path))
    with pytest.raises(MNISTError) as info:
        data.mnist("test")
    assert_clear_message(info.value, raw)
    assert str(target) in str(info.value)
    assert words in str(info.value)


def test_gzipped_files_are_read_like_plain_ones(tmp_path):
    name = "t10k-labels-idx1-ubyte"
    gz = tmp_path / f"{name}.gz"
    gz.write_bytes(gzip.compress((REAL_RAW / name).read_bytes()))
    magic, count, shape = FILES[name]
    plain = data.read_idx(REAL_RAW / name, magic, count, shape)
    np.testing.assert_array_equal(data.read_idx(gz, magic, count, shape), plain)


def test_split_is_fixed_disjoint_and_complete():
    train_a, val_a = data.split_indices()
    train_b, val_b = data.split_indices()
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(train_a) == 55_000 and len(val_a) == 5_000
    together = torch.cat([train_a, val_a])
    assert len(set(together.tolist())) == 60_000
    assert set(together.tolist()) == set(range(60_000))
    # a different seed gives a different split (the seed is what fixes it)
    assert not torch.equal(data.split_indices(seed=1)[1], val_a)


def test_splits_have_the_documented_sizes_and_come_from_the_files():
    arrays = data.raw_arrays(os.environ["NNLAB_DATA"])
    official_x = arrays["train-images-idx3-ubyte"]
    official_y = arrays["train-labels-idx1-ubyte"]
    sizes = {"train": 55_000, "val": 5_000, "test": 10_000}
    for split, n in sizes.items():
        images, labels = data.raw_split(split)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert set(labels.unique().tolist()) == set(range(10))
    train_idx, val_idx = data.split_indices()
    val_x, val_y = data.raw_split("val")
    np.testing.assert_array_equal(val_x.numpy(), official_x[val_idx.numpy()])
    np.testing.assert_array_equal(val_y.numpy(), official_y[val_idx.numpy()])
    test_x, _ = data.raw_split("test")
    np.testing.assert_array_equal(test_x.numpy(), arrays["t10k-images-idx3-ubyte"])


def test_normalisation_uses_training_statistics():
    arrays = data.raw_arrays(os.environ["NNLAB_DATA"])
    train_idx, _ = data.split_indices()
    pixels = arrays["train-images-idx3-ubyte"][train_idx.numpy()].astype(np.float64) / 255.0
    mean, std = data.normalisation()
    assert mean == pytest.approx(pixels.mean(), rel=1e-9)
    assert std == pytest.approx(pixels.std(ddof=1), rel=1e-9)

    images, labels = data.mnist("train")
    assert images.shape == (55_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert abs(float(images.double().mean())) < 1e-4
    assert abs(float(images.double().std()) - 1.0) < 1e-4
    # validation and test are scaled with the training statistics, not their own
    val_raw, _ = data.raw_split("val")
    val, _ = data.mnist("val")
    expected = (val_raw.double() / 255.0 - mean) / std
    torch.testing.assert_close(val[:, 0].double(), expected, rtol=0, atol=1e-5)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        data.mnist("valid")


def test_tests_run_offline_but_loopback_works(block_network):
    import socket
    import threading

    from conftest import NetworkBlocked

    for address in [("192.0.2.1", 80), ("example.org", 443), ("2001:db8::1", 80)]:
        with pytest.raises(NetworkBlocked):
            socket.create_connection(address, timeout=1)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family) as s, pytest.raises(NetworkBlocked):
            s.connect(address)
        with socket.socket(family) as s, pytest.raises(NetworkBlocked):
            s.connect_ex(address)
    with socket.create_server(("127.0.0.1", 0)) as server:
        accepted = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=5):
            thread.join(timeout=5)
        assert len(accepted) == 1
        accepted[0].close()
