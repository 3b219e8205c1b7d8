"""Stopping `nnlab train --jobs 2` leaves nothing behind: no worker outlives the command, no
run is trained or stored after it stopped, and what finished is reported.

The tests act on events, not on time: the workers wait at a gate (see ``tiny_experiments``)
while still importing, or in the middle of their first runs, until the test has stopped the
command; only then are they let go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import tiny_experiments as T

pytestmark = pytest.mark.slow
SCRIPT = str(Path(T.__file__))
GATE_STEP = T.STEPS_PER_EPOCH + 3  # in the second epoch: one epoch trained and checkpointed


def _start(results: Path, gate: Path, stage: str) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Train the held experiment with two workers; return once both reached ``stage``:
    ``starting`` (importing, before a run reached them) or ``running`` (mid-run)."""
    env = {**os.environ, "NNLAB_RESULTS": str(results), "NNLAB_JOBS": "2"}
    if stage == "starting":
        env[T.START_GATE] = str(gate)
    proc = subprocess.Popen([sys.executable, SCRIPT, "train", "--gate", str(gate), "--gate-step", str(GATE_STEP),
                             T.HELD.name, "--jobs", "2", "--device", "cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if stage == "running":  # (the workers pass the start gate: it is not set)
        pids = T.await_arrivals(gate, "running", 2, proc)
    else:
        pids = T.await_arrivals(gate, "starting", 2, proc)
        assert not T.arrivals(gate, "running")
    workers = [psutil.Process(pid) for pid in pids]
    assert all(proc.pid in {p.pid for p in w.parents()} for w in workers)
    return proc, workers


def _gone(processes: list[psutil.Process], within: float) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=within)
    return not alive


def _in_session(session: int) -> list[psutil.Process]:
    """The processes of the command's session (its own new one) that have not ended."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == session and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (OSError, psutil.Error):
            continue
    return found


def _session_ends(session: int, within: float) -> bool:
    """Whether every process of the session ends (the resource tracker last) within the time."""
    return _gone(_in_session(session), within) and not _in_session(session)


@pytest.mark.parametrize("stage", ["starting", "running"])
def test_workers_die_with_a_killed_parent_and_store_nothing(tmp_path, stage):
    results, gate = tmp_path / "results", tmp_path / "gate"
    gate.mkdir()
    proc, workers = _start(results, gate, stage)
    assert not (results / T.HELD.name / "result.json").exists()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    T.open_gate(gate, stage)  # a worker still importing now finds its parent gone
    assert _gone(workers, within=60), [w.pid for w in workers if w.is_running()]
    assert _session_ends(proc.pid, within=60)  # no process is left that could train or store a run
    assert not (results / T.HELD.name / "result.json").exists()
    if stage == "running":
        assert len(list((results / T.HELD.name / ".checkpoints").iterdir())) == 2  # they were mid-run


def test_sigterm_stops_running_runs_cancels_queued_ones_and_reports(tmp_path):
    results, gate = tmp_path / "results", tmp_path / "gate"
    gate.mkdir()
    proc, workers = _start(results, gate, "running")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"[{T.HELD.name}] stopped: 0 of 6 run(s) finished and stored" in err
    assert "interrupted; finished runs are stored" in err and "Traceback" not in err
    assert "leaked semaphore" not in err  # the pool was stopped cleanly
    assert _gone(workers, within=60)
    T.open_gate(gate, "running")
    assert _session_ends(proc.pid, within=60)
    assert not (results / T.HELD.name / "result.json").exists()


def test_a_killed_worker_fails_nothing_but_its_run_is_tried_again(tmp_path):
    """SIGKILL one of two workers mid-run (as the out-of-memory killer would): its run is
    tried again in a fresh pool, the run the broken pool took with it goes on from its
    checkpoint, the queued runs train, and every run ends stored."""
    results, gate = tmp_path / "results", tmp_path / "gate"
    gate.mkdir()
    proc, workers = _start(results, gate, "running")
    killed, spared = workers
    killed.kill()
    # the two runs that were held go on in a fresh pool, and reach the gate again there
    again = [pid for pid in T.await_arrivals(gate, "running", 4, proc) if pid not in (killed.pid, spared.pid)]
    assert len(again) == 2 and _gone([spared], within=60)  # the broken pool stopped its other worker
    T.open_gate(gate, "running")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "terminated abruptly" not in err and "FAILED" not in err
    retried = [line for line in err.splitlines() if "trying again" in line]
    assert len(retried) == 1, err
    assert retried[0].startswith(f"[{T.HELD.name}] main seed=")
    assert retried[0].endswith(": its worker process died (killed by SIGKILL); trying again (attempt 2 of 3)")
    assert int(retried[0].split("seed=")[1].split(":")[0]) in (0, 1)  # the first two runs were held
    assert err.strip().splitlines()[-1] == (f"[{T.HELD.name}] 6 of 6 run(s) stored, after 1 retry(-ies) of a run "
                                            "whose worker process died")
    stored = json.loads((results / T.HELD.name / "result.json").read_text())["runs"]
    assert sorted(stored) == [f"main/seed={s}" for s in range(6)]
    # the two held runs went on from their checkpoints (one epoch trained), the others started afresh
    assert {k: r.get("resumed_from_epoch") for k, r in stored.items()} == {
        f"main/seed={s}": 1 if s < 2 else None for s in range(6)}
    assert _session_ends(proc.pid, within=60)


def test_a_run_whose_worker_always_dies_fails_alone(results_dir, tmp_path):
    """A run that kills its worker every time is tried 1 + MAX_RETRIES times, then fails
    alone; the other run is stored, and the messages count what was stored."""
    from dataclasses import replace

    from nnlab import results as store
    from nnlab.runner import MAX_RETRIES, WorkerDied, run_experiment

    main = T.TINY.variants[0]
    exp = replace(T.TINY, name="test-tiny-doomed", seeds=(0,), data=T.DoomedData(T.SYNTHETIC), variants=(
        main, replace(main, name="doomed", train=replace(T.TINY.train, lr=T.DOOMED_LR))))
    said = []
    with pytest.raises(WorkerDied) as info:
        run_experiment(exp, jobs=2, device="cpu", log=said.append)
    assert str(info.value) == f"its worker process died (killed by SIGKILL), {MAX_RETRIES + 1} times; not tried again"
    retries = [line for line in said if "trying again" in line]
    assert retries == [f"[{exp.name}] doomed seed=0: its worker process died (killed by SIGKILL); trying again "
                       f"(attempt {n} of {MAX_RETRIES + 1})" for n in range(2, MAX_RETRIES + 2)]
    assert [line for line in said if "FAILED" in line] == [
        f"[{exp.name}] 2/2 doomed seed=0: FAILED, not stored: {info.value}"]
    assert said[-1] == f"[{exp.name}] 1 of 2 run(s) stored, after {MAX_RETRIES} retry(-ies) of a run whose worker " \
                       "process died"
    assert sorted(store.read_raw(exp.name)["runs"]) == ["main/seed=0"]
