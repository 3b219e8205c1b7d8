"""`nnlab train` says what it did: runs already current, runs resumed (and from which epoch),
and what changed in a stale result."""

from __future__ import annotations

from dataclasses import replace

import pytest
import tiny_experiments as T
from test_cli import run

from nnlab import analyses, runner
from nnlab import experiments as E
from nnlab import results as store


def test_nothing_to_train_is_said(tiny_experiment, capsys):
    code, _, err = run(["train", T.TINY.name, "--device", "cpu"], capsys)
    assert code == 0 and "seed=1" in err
    code, out, err = run(["train", T.TINY.name, "--device", "cpu"], capsys)
    assert code == 0 and out == ""
    assert err.strip().splitlines() == [f"[{T.TINY.name}] all 2 run(s) stored and current, nothing to train "
                                        "(retrain them with --fresh)"]
    code, _, err = run(["train", T.TINY.name, "--seeds", "1", "--device", "cpu"], capsys)
    assert code == 0
    assert err.strip().splitlines() == [f"[{T.TINY.name}] the requested 1 run(s) stored and current, nothing to "
                                        "train (retrain them with --fresh)"]


def test_train_all_says_so_per_experiment(tiny_experiment, register_experiment, monkeypatch, capsys):
    monkeypatch.setattr(E, "REGISTRY", {T.TINY.name: T.TINY, "test-tiny-2": replace(T.TINY, name="test-tiny-2")})
    monkeypatch.setattr(analyses, "REGISTRY", {})  # the book's stored studies are not this project's
    assert run(["train", "--all", "--device", "cpu"], capsys)[0] == 0
    code, _, err = run(["train", "--all", "--device", "cpu"], capsys)
    assert code == 0
    said = [line for line in err.splitlines() if "nothing to train" in line]
    assert [line.split("]")[0] for line in said] == [f"[{T.TINY.name}", "[test-tiny-2"]


def test_a_stale_result_says_what_changed(tiny_experiment, register_experiment, capsys):
    assert run(["train", T.TINY.name, "--device", "cpu"], capsys)[0] == 0
    register_experiment(replace(T.TINY, train=replace(T.TINY.train, lr=1e-2)))
    code, out, _ = run(["results", "check"], capsys)
    assert f"{T.TINY.name}: stale: variant(s) main changed since their runs were trained (main: recipe)" in out
    code, _, err = run(["train", T.TINY.name, "--device", "cpu"], capsys)
    assert code == 0
    first, *runs = err.strip().splitlines()
    assert first == (f"[{T.TINY.name}] stale: variant(s) main changed since their runs were trained (main: recipe); "
                     "training their runs again")
    assert len(runs) == 2 and store.status(T.TINY.name).state == "ok"


def test_resume_says_which_runs_continued_and_records_it(tiny_experiment, capsys):
    with pytest.raises(KeyboardInterrupt):  # seed 0 stops after its first epoch, leaving its checkpoint
        runner.train_one(T.TINY, T.TINY.variants[0], 0, device="cpu", stop_after_epoch=lambda e: e == 1)
    assert runner.checkpoint_path(T.TINY.name, "main", 0).exists()
    code, _, err = run(["train", T.TINY.name, "--resume", "--device", "cpu"], capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"[{T.TINY.name}] 1/2 main seed=0:")
    assert lines[0].endswith("[resumed from its checkpoint after epoch 1 of 2]")
    assert lines[1].endswith("[no checkpoint to resume: trained from the start]")
    runs = store.load(T.TINY.name)["runs"]
    assert runs["main/seed=0"]["resumed_from_epoch"] == 1
    assert "resumed_from_epoch" not in runs["main/seed=1"]
    # a run trained without --resume records nothing of the kind, and says nothing of it
    code, _, err = run(["train", T.TINY.name, "--fresh", "--device", "cpu"], capsys)
    assert code == 0 and "resume" not in err
    assert all("resumed_from_epoch" not in r for r in store.load(T.TINY.name)["runs"].values())
