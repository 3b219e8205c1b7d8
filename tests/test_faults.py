"""Fault injection: every fault a course can meet ends in one line that names the file or the
value and the fix, and loses nothing that was stored (issue 28)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import tiny_experiments as T
import torch

from nnlab import fileio, runner
from nnlab import results as store
from nnlab.cli import main
from nnlab.data import ArrayData, DataError, DataSource
from nnlab.models import build, mlp
from nnlab.train import ConfigError, TrainConfig, train

NAME = T.TINY.name


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.fixture
def stored(tiny_experiment, capsys):
    assert main(["train", NAME, "--device", "cpu"]) == 0
    capsys.readouterr()
    return store.load(NAME)


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{fileio.TMP_SUFFIX}")]


# The store ---------------------------------------------------------------------------------

def test_a_result_file_that_is_a_folder_is_named_and_kept(stored, capsys):
    path = store.experiment_dir(NAME) / "result.json"
    path.unlink()
    path.mkdir()
    (path / "notes.txt").write_text("someone's notes")
    code, out, _ = run_cli(["results", "check", NAME], capsys)
    assert code == 1 and f"{path} is a folder" in out and "move it out" in out
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and any(line.startswith(NAME) and "damaged" in line for line in out.splitlines())
    for argv in (["train", NAME, "--device", "cpu"], ["train", NAME, "--device", "cpu", "--fresh"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 1 and f"{path} is a folder" in one_line(err)
    assert (path / "notes.txt").read_text() == "someone's notes"  # nothing lost


def _edit_result(edit) -> Path:
    path = store.experiment_dir(NAME) / "result.json"
    raw = json.loads(path.read_text())
    edit(raw["runs"])
    path.write_text(json.dumps(raw))
    return path


def _weights_outside(runs: dict, where: str) -> None:
    """Point run main/seed=0 at an intact copy of its weights outside the store."""
    run = runs["main/seed=0"]
    folder = store.experiment_dir(NAME)
    outside = folder.parent.parent / "outside.safetensors"
    shutil.copy(folder / run["weights"]["file"], outside)
    run["weights"]["file"] = str(outside) if where == "absolute" else "../../outside.safetensors"


@pytest.mark.parametrize("edit, words", [
    (lambda runs: runs["main/seed=0"].update(val_acc=math.nan), "val_acc=nan, not a finite number"),
    (lambda runs: runs["main/seed=0"].update(test_acc=7.5), "test_acc=7.5, not an accuracy in [0, 1]"),
    (lambda runs: runs["main/seed=0"].update(val_loss=-0.5), "val_loss=-0.5, a negative loss"),
    (lambda runs: _weights_outside(runs, "absolute"), "leaves the experiment's weights folder"),
    (lambda runs: _weights_outside(runs, "relative"), "'../../outside.safetensors' that leaves"),
    (lambda runs: runs["main/seed=0"].update(seed=5), "run main/seed=0 is stored under that key but is variant "
                                                      "'main', seed 5"),
], ids=["nan", "7.5", "negative-loss", "absolute-path", "dotdot-path", "key-and-seed"])
def test_results_check_range_checks_what_it_reads(stored, capsys, edit, words):
    path = _edit_result(edit)
    code, out, _ = run_cli(["results", "check", NAME], capsys)
    assert code == 1 and f"{NAME}: damaged" in out and words in out and str(path) in out
    with pytest.raises(store.DamagedResult, match="damaged"):
        store.load(NAME)


def test_results_clean_on_a_read_only_store_is_one_line_and_removes_nothing_else(stored, capsys, monkeypatch):
    folder = store.experiment_dir(NAME)
    orphan = folder / "weights" / "main-seed7-0123456789abcdef.safetensors"
    orphan.write_bytes(b"no run points here")
    real_unlink = Path.unlink

    def refuse(self, missing_ok=False):
        if self.parent.name == "weights":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    code, _, err = run_cli(["results", "clean", NAME], capsys)
    line = one_line(err)
    assert code == 1 and str(orphan) in line and "read-only" in line and "make it writable" in line
    assert orphan.exists() and store.load(NAME)["runs"].keys() == stored["runs"].keys()


def test_list_shows_damaged_weights(stored, capsys):
    path = store.experiment_dir(NAME) / stored["runs"]["main/seed=1"]["weights"]["file"]
    blob = path.read_bytes()
    path.write_bytes(blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])
    code, out, _ = run_cli(["list"], capsys)
    (line,) = [line for line in out.splitlines() if line.startswith(NAME + " ")]
    assert code == 0 and line.split()[1] == "damaged"


def test_load_model_of_a_seed_the_experiment_lacks_says_how_to_add_it(stored):
    with pytest.raises(store.MissingResult) as info:
        store.load_model(NAME, seed=7)
    text = str(info.value)
    assert "has no seed 7" in text and "its seeds are [0, 1]" in text and "add 7 to the experiment's seeds" in text


# A full disk ---------------------------------------------------------------------------------

@pytest.fixture
def full_disk(monkeypatch):
    """A function that makes every atomic write of a file whose name ends in ``suffix`` fail
    as on a full disk (ENOSPC when the bytes are flushed)."""
    real_fsync = fileio.os.fsync

    def fill(suffix: str):
        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").split(fileio.TMP_SUFFIX)[0].rsplit(".", 1)[0].endswith(suffix):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_fsync(fd)

        monkeypatch.setattr(fileio.os, "fsync", fsync)

    return fill


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the file written through /proc")
def test_a_full_disk_at_the_checkpoint_is_one_line_and_leaves_no_file(tiny_experiment, capsys, full_disk):
    full_disk(".pt")
    code, _, err = run_cli(["train", NAME, "--device", "cpu", "--seeds", "0"], capsys)
    line = one_line(err)
    folder = runner.checkpoint_path(NAME, "main", 0).parent
    assert code == 1 and f"in {folder}" in line and "free space" in line
    assert not _leftovers(store.results_root()) and not list(folder.iterdir())
    assert store.status(NAME).state == "missing"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the file written through /proc")
def test_a_full_disk_at_the_result_keeps_the_stored_runs(tiny_experiment, capsys, full_disk):
    assert main(["train", NAME, "--device", "cpu", "--seeds", "0"]) == 0
    capsys.readouterr()
    before = (store.experiment_dir(NAME) / "result.json").read_bytes()
    full_disk("result.json")
    code, _, err = run_cli(["train", NAME, "--device", "cpu"], capsys)
    line = one_line(err)
    assert code == 1 and f"in {store.experiment_dir(NAME)}" in line and "free space" in line
    assert (store.experiment_dir(NAME) / "result.json").read_bytes() == before
    assert not _leftovers(store.results_root()) and store.debris(NAME) == []  # no orphan weights either
    assert store.load_model(NAME, seed=0) is not None


# Checkpoints -----------------------------------------------------------------------------

def _interrupted(register_experiment) -> tuple[Path, dict]:
    """A checkpoint of the resumable experiment after its first epoch, read back."""
    exp = register_experiment(T.RESUMABLE)
    with pytest.raises(KeyboardInterrupt):
        runner.train_one(exp, exp.variants[0], 0, device="cpu", stop_after_epoch=lambda e: e == 1)
    path = runner.checkpoint_path(exp.name, "main", 0)
    return path, torch.load(path, weights_only=True)


def _bigger(state: dict) -> None:
    key = next(k for k, v in state["model"].items() if v.dim() == 2)
    state["model"][key] = torch.zeros(state["model"][key].shape[0] + 1, state["model"][key].shape[1])


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.update(history=[0.1, 0.2]), "has no readable history (a list"),
    (lambda s: s.update(epoch=T.RESUMABLE.train.epochs + 3), "says it holds epoch 9, but the recipe trains 6"),
    (lambda s: s.update(epoch=True), "says it holds epoch True"),
    (lambda s: s["history"]["train_loss"].append(1.0), "holds 2 epoch(s) of history for epoch 1"),
    (_bigger, "does not fit this run's model and optimiser (RuntimeError: size mismatch for"),
], ids=["history-list", "epoch-beyond", "epoch-bool", "history-length", "shapes"])
def test_a_damaged_checkpoint_is_one_line_with_the_file_and_the_fix(results_dir, synthetic_data,
                                                                    register_experiment, capsys, edit, words):
    path, state = _interrupted(register_experiment)
    edit(state)
    torch.save(state, path)
    code, _, err = run_cli(["train", T.RESUMABLE.name, "--resume", "--device", "cpu"], capsys)
    line = one_line(err)
    assert code == 1 and f"checkpoint {path} " in line and words in line
    assert "delete it" in line and "without --resume" in line
    assert path.exists() and store.status(T.RESUMABLE.name).state == "missing"  # nothing stored, nothing lost


# Data ------------------------------------------------------------------------------------

def _arrays(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_empty_split_is_refused_by_name(split, one_thread):
    data = {"train": _arrays(60), "val": _arrays(20), "test": _arrays(20)}
    data[split] = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(DataError, match=f"the {split} split is empty"):
        train(build(tuple(mlp([8], classes=3)), (4,)), TrainConfig(epochs=1, batch_size=16), data=data)


def test_an_empty_test_split_of_an_experiment_is_one_line(results_dir, register_experiment, capsys, one_thread):
    empty = ArrayData("empty-test", train=_arrays(60), val=_arrays(20), test=(torch.zeros(0, 4), torch.zeros(0)),
                      num_classes=3)
    exp = register_experiment(replace(T.TINY, name="test-empty-test", data=empty, seeds=(0,),
                                      variants=(T.E.Variant("main", tuple(mlp([8], classes=3))),)))
    code, _, err = run_cli(["train", exp.name, "--device", "cpu"], capsys)
    assert code == 1 and "the test split is empty" in one_line(err)


class Shifted(DataSource):
    """A course's own source whose labels run one past its classes (1..3 for three classes)."""

    name, input_shape, num_classes = "shifted", (4,), 3

    def __init__(self, shift: int):
        self.shift = shift

    def describe(self) -> dict:
        return {"dataset": self.name, "shift": self.shift}

    def load(self, split: str):
        x, y = _arrays({"train": 60, "val": 20, "test": 20}[split])
        return x, y + self.shift


@pytest.mark.parametrize("shift, words", [(1, "labels lie in 1..3, outside 0..2 (3 classes)"),
                                          (-1, "labels lie in -1..1, outside 0..2")])
def test_a_data_source_with_labels_out_of_range_is_refused(shift, words, one_thread):
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        train(build(tuple(mlp([8], classes=3)), (4,)), TrainConfig(epochs=1, batch_size=16), data=Shifted(shift))


# Experiment modules and recipes ------------------------------------------------------------

@pytest.mark.parametrize("argv", [["list"], ["train", "--all", "--device", "cpu"]])
@pytest.mark.parametrize("code_", [0, 3])
def test_sys_exit_in_an_experiment_module_is_an_error_naming_it(tmp_path, results_dir, capsys, argv, code_):
    module = tmp_path / "course_experiments.py"
    module.write_text(f"import sys\nsys.exit({code_})\n")
    code, _, err = run_cli([*argv, "--experiments", str(module)], capsys)
    line = one_line(err)
    assert code == 1 and "course_experiments.py" in line and f"sys.exit({code_})" in line


@pytest.mark.parametrize("field, value", [
    ("epochs", True), ("batch_size", True), ("eval_batch", False), ("threads", True), ("lr", True), ("lr", "0.1"),
    ("weight_decay", "0"), ("momentum", "0.9"), ("warmup", True), ("label_smoothing", "0.1"),
    ("max_shift", True), ("milestones", ("3",)), ("weight_decay", math.inf),
])
def test_train_config_refuses_booleans_and_strings_where_numbers_belong(field, value):
    with pytest.raises(ConfigError, match=f"{field} must be"):
        TrainConfig(**{field: value})
