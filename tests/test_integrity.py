"""Nothing wrong is ever stored or read silently: weights and run fields are verified, leftover
files are found and cleaned, data files are checked against their checksums, and bad input
gets one line that names the problem and the fix."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import tiny_experiments as T
import torch

from nnlab import data
from nnlab import results as store
from nnlab.book import build as book_build
from nnlab.cli import main
from nnlab.data import FILES, DataError
from nnlab.train import ConfigError, TrainConfig, pick_device

NAME = T.TINY.name
REAL_RAW = Path(os.environ["NNLAB_DATA"]) / "MNIST" / "raw"


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def stored(tiny_experiment, capsys):
    assert main(["train", NAME, "--device", "cpu"]) == 0
    capsys.readouterr()
    return store.load(NAME)


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_results_check_verifies_every_weights_file(stored, capsys, damage):
    path = store.experiment_dir(NAME) / stored["runs"]["main/seed=1"]["weights"]["file"]
    if damage == "flip":
        blob = path.read_bytes()
        path.write_bytes(blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])
    else:
        path.unlink()
    code, out, _ = run_cli(["results", "check", NAME], capsys)
    assert code == 1
    assert str(path) in out and "run main/seed=1" in out
    assert ("does not match its sha256" if damage == "flip" else "is missing") in out
    assert f"git checkout -- {path}" in out and f"nnlab train {NAME} --fresh" in out


@pytest.mark.parametrize("field, value, words", [
    ("seed", None, "has no integer seed"),
    ("test_acc", None, "has no test_acc"),
    ("val_acc", "0.98", "holds val_acc='0.98', not a number"),
    ("weights", {"file": "weights/x.safetensors"}, "weights entry without a file name and a sha256"),
])
def test_a_run_without_what_readers_rely_on_is_damaged_by_name(stored, capsys, field, value, words):
    path = store.experiment_dir(NAME) / "result.json"
    raw = json.loads(path.read_text())
    run = raw["runs"]["main/seed=0"]
    if value is None:
        del run[field]
    else:
        run[field] = value
    path.write_text(json.dumps(raw))
    for read in (store.runs, store.summary, store.load_model):
        with pytest.raises(store.DamagedResult) as info:  # never a bare KeyError or TypeError
            read(NAME)
        assert str(path) in str(info.value) and "run main/seed=0" in str(info.value) and words in str(info.value)
    code, out, _ = run_cli(["results", "check"], capsys)
    assert code == 1 and f"{NAME}: damaged" in out


def test_a_result_of_a_newer_schema_is_named_as_such_and_kept(stored, capsys):
    path = store.experiment_dir(NAME) / "result.json"
    raw = json.loads(path.read_text())
    raw["schema"] = 7
    path.write_text(json.dumps(raw))
    before = path.read_bytes()
    assert "written by a newer nnlab (result schema 7" in store.status(NAME).detail
    code, _, err = run_cli(["train", NAME, "--device", "cpu", "--seeds", "0"], capsys)
    assert code == 1 and "upgrade nnlab" in err
    assert path.read_bytes() == before  # its runs were not dropped


def test_leftover_files_are_reported_and_cleaned_and_not_book_inputs(stored, capsys, tmp_path):
    folder = store.experiment_dir(NAME)
    tmp_file = folder / ".result.json.abc123.tmp"
    tmp_file.write_text("{half")
    orphan = folder / "weights" / "main-seed7-0123456789abcdef.safetensors"
    orphan.write_bytes(b"no run points here")
    code, out, _ = run_cli(["results", "check", NAME], capsys)
    assert code == 0, out  # every result is intact; the leftovers are reported, not fatal
    assert "2 leftover file(s)" in out and "nnlab results clean" in out
    code, out, _ = run_cli(["results", "clean", NAME], capsys)
    assert code == 0 and "2 leftover file(s) removed" in out
    assert not tmp_file.exists() and not orphan.exists()
    assert store.load_model(NAME, seed=0) is not None  # the weights runs point at are kept
    # the book's change detection ignores what an interrupted write leaves behind
    root = tmp_path / "repo"
    (root / "code" / "nnlab").mkdir(parents=True)
    (root / "results" / "x").mkdir(parents=True)
    (root / "results" / "x" / "result.json").write_text("{}")
    before = book_build.inputs_hash(root)
    (root / "results" / "x" / ".result.json.q1w2e3.tmp").write_text("{")
    assert book_build.inputs_hash(root) == before


def test_a_resumed_run_records_its_total_time(results_dir, synthetic_data, register_experiment):
    from dataclasses import replace

    from nnlab import runner

    exp = register_experiment(replace(T.RESUMABLE, seeds=(0,)))
    with pytest.raises(KeyboardInterrupt):  # interrupted after epoch 3 of 6
        runner.train_one(exp, exp.variants[0], 0, device="cpu", stop_after_epoch=lambda e: e == 3)
    ckpt = torch.load(runner.checkpoint_path(exp.name, "main", 0), weights_only=True)
    assert ckpt["seconds"] > 0
    record, _ = runner.train_one(exp, exp.variants[0], 0, device="cpu", resume=True)
    assert record["seconds"] >= ckpt["seconds"]
    assert math.isclose(sum(record["history"]["seconds"]), record["seconds"], rel_tol=0.5)


def test_a_garbage_or_truncated_checkpoint_is_one_clear_line(results_dir, synthetic_data, register_experiment, capsys):
    from nnlab import runner

    exp = register_experiment(T.RESUMABLE)
    path = runner.checkpoint_path(exp.name, "main", 0)
    path.parent.mkdir(parents=True)
    for content in (b"garbage, not a checkpoint", b"PK\x03\x04" + b"\0" * 40):
        path.write_bytes(content)
        code, _, err = run_cli(["train", exp.name, "--resume", "--device", "cpu"], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert str(path) in err and "delete it" in err and "weights_only" not in err


@pytest.mark.parametrize("device, words", [("mps", "MPS is not available"), ("meta", "cannot train")])
def test_a_device_that_cannot_train_names_the_fix(device, words):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ConfigError, match=words) as info:
        pick_device(device)
    assert "cpu" in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf")])
def test_max_shift_must_be_a_finite_non_negative_number(value):
    with pytest.raises(ConfigError, match="max_shift must be a finite number >= 0"):
        TrainConfig(max_shift=value)


def test_duplicate_seeds_are_refused(tiny_experiment, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", NAME, "--seeds", "0,0"])
    assert info.value.code == 2 and "given twice" in capsys.readouterr().err
    from nnlab.runner import run_experiment

    with pytest.raises(ValueError, match="name a seed twice"):
        run_experiment(NAME, seeds=[1, 1], device="cpu")


# --------------------------------------------------------------------------------------
# Data integrity

@pytest.fixture
def mnist_copy(tmp_path, monkeypatch):
    """``NNLAB_DATA`` pointing at MNIST files linked from the real ones; a test replaces one."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        (raw / name).symlink_to(REAL_RAW / name)
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path))
    data.clear_cache()
    yield raw
    monkeypatch.undo()
    data.clear_cache()


def _replace(raw: Path, name: str, edit) -> Path:
    content = bytearray((REAL_RAW / name).read_bytes())
    edit(content)
    (raw / name).unlink()
    (raw / name).write_bytes(bytes(content))
    return raw / name


def test_same_size_pixel_corruption_is_refused_by_checksum(mnist_copy):
    def flip(b):
        b[5000] ^= 0xFF

    path = _replace(mnist_copy, "train-images-idx3-ubyte", flip)
    with pytest.raises(DataError) as info:
        data.mnist("train")
    assert str(path) in str(info.value) and "not MNIST's" in str(info.value) and "NNLAB_DATA" in str(info.value)


def test_labels_out_of_range_are_refused_before_training():
    arrays = {"train": (torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 254, 1])), "val": (torch.zeros(2, 1, 2, 2),
                                                                                       torch.tensor([0, 1]))}
    with pytest.raises(DataError, match=r"labels must lie in 0..9"):
        data.ArrayData("bytes", train=arrays["train"], val=arrays["val"], num_classes=10)


def test_every_stored_run_carries_the_fingerprint_of_its_data(stored):
    for run in stored["runs"].values():
        assert run["data_fingerprint"] == T.SYNTHETIC.fingerprint()
    assert len(data.MNIST.fingerprint().split(",")) == 4
    assert "train-images-idx3-ubyte:6bbc9ace898e44ae57da46a324031adb" in data.MNIST.fingerprint()


def test_a_missing_data_folder_is_named_and_not_created(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("NNLAB_DATA", str(missing))
    data.clear_cache()
    try:
        with pytest.raises(DataError, match="does not exist"):
            data.mnist("test")
        assert not missing.exists()
    finally:
        monkeypatch.undo()
        data.clear_cache()


# --------------------------------------------------------------------------------------
# Numbers that do not depend on scheduling

CONV = T.E.Experiment(
    name="test-conv-schedule", purpose="A small CNN, trained alone and in a pool.", chapter="tests",
    variants=(T.E.Variant("c4", ("conv 4 3 p=1", "relu", "maxpool 2", "flatten", "linear 10")),),
    train=TrainConfig(epochs=1, batch_size=64, lr=3e-3), seeds=(0, 1), data=T.SYNTHETIC)


@pytest.mark.slow
def test_a_run_gives_the_same_numbers_alone_or_in_a_pool(tmp_path, monkeypatch):
    from nnlab.runner import reproduce, run_experiment

    torch.set_num_threads(2)  # what a lone run in a fresh process would get on this machine
    stores = {}
    for jobs in (1, 2):
        monkeypatch.setenv("NNLAB_RESULTS", str(tmp_path / f"jobs{jobs}"))
        run_experiment(CONV, jobs=jobs, device="cpu", log=lambda m: None)
        stores[jobs] = store.load(CONV)["runs"]
    for key, alone in stores[1].items():
        pooled = stores[2][key]
        assert alone["threads"] == pooled["threads"] == 1
        for metric in ("val_acc", "val_loss", "test_acc", "test_loss"):
            assert alone[metric] == pooled[metric], (key, metric)
        for curve in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert alone["history"][curve] == pooled["history"][curve], (key, curve)
        assert alone["weights"]["sha256"] == pooled["weights"]["sha256"]
    # and `nnlab results reproduce` agrees, leaving the store as it was
    before = (tmp_path / "jobs2" / CONV.name / "result.json").read_bytes()
    rows = reproduce(CONV, device="cpu")
    assert [r["same"] for r in rows] == [True, True]
    assert (tmp_path / "jobs2" / CONV.name / "result.json").read_bytes() == before
