"""A training run killed with SIGKILL resumes with ``--resume`` and ends as if never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_experiments as T
import torch

import nnlab.train
from nnlab import results as store
from nnlab import runner
from nnlab.cli import main

EXP = T.RESUMABLE


def without_time(run: dict) -> dict:
    drop = {"seconds", "finished", "weights", "resumed_from_epoch"}
    run = {k: v for k, v in run.items() if k not in drop}
    run["history"] = {k: v for k, v in run["history"].items() if k != "seconds"}
    return run


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_resumes_to_the_uninterrupted_result(results_dir, synthetic_data, register_experiment,
                                                        monkeypatch, tmp_path):
    register_experiment(EXP)
    ckpt = runner.checkpoint_path(EXP.name, "main", 0)
    # 1. train in a subprocess, held in its third epoch, and kill it there
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen([sys.executable, str(Path(T.__file__)), "train", "--gate", str(gate), "--gate-step",
                             str(2 * T.STEPS_PER_EPOCH + 5), EXP.name, "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    T.await_arrivals(gate, "running", 1, proc)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, out.decode()
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert done == 2
    assert store.status(EXP.name).state == "missing"

    # 2. resume here, counting the training steps it still takes
    steps = []
    lr_at = nnlab.train.lr_at
    monkeypatch.setattr(nnlab.train, "lr_at", lambda *a, **k: steps.append(a[1]) or lr_at(*a, **k))
    assert main(["train", EXP.name, "--resume", "--device", "cpu"]) == 0
    assert steps[0] == done * T.STEPS_PER_EPOCH  # it went on from the checkpoint ...
    assert len(steps) == (EXP.train.epochs - done) * T.STEPS_PER_EPOCH  # ... and not from the start
    assert not ckpt.exists()
    resumed = store.load(EXP.name)["runs"]["main/seed=0"]
    resumed_model = store.load_model(EXP.name, seed=0)

    # 3. the same run without interruption, in another store
    monkeypatch.setenv("NNLAB_RESULTS", str(tmp_path / "uninterrupted"))
    runner.run_experiment(EXP.name, device="cpu", log=lambda msg: None)
    reference = store.load(EXP.name)["runs"]["main/seed=0"]
    assert resumed["resumed_from_epoch"] == done and "resumed_from_epoch" not in reference
    assert without_time(resumed) == without_time(reference)
    assert resumed["weights"]["sha256"] == reference["weights"]["sha256"]
    for a, b in zip(resumed_model.state_dict().values(), store.load_model(EXP.name, seed=0).state_dict().values()):
        assert torch.equal(a, b)
