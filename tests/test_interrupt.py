"""Stopping `nnlab train --jobs 2` leaves nothing behind: no worker outlives the command, no
run is trained or stored after it stopped, and what finished is reported.

The tests act on events, not on time: the workers wait at a gate (see ``tiny_experiments``)
while still importing, or in the middle of their first runs, until the test has stopped the
command; only then are they let go."""

from __future__ import annotations

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
    assert _gone(workers, within=60)
    T.open_gate(gate, "running")
    assert _session_ends(proc.pid, within=60)
    assert not (results / T.HELD.name / "result.json").exists()
