"""Stopping `nnlab train --jobs 2` leaves nothing behind: no worker outlives the command, no
run is trained or stored after it stopped, and what finished is reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import tiny_experiments as T

pytestmark = pytest.mark.slow
SCRIPT = str(Path(T.__file__))


def _start(results: Path, settle: float = 2.0) -> tuple[subprocess.Popen, list[psutil.Process]]:
    env = {**os.environ, "NNLAB_RESULTS": str(results), "NNLAB_JOBS": "2"}
    proc = subprocess.Popen([sys.executable, SCRIPT, "train", T.SLOW.name, "--jobs", "2", "--device", "cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:  # the two workers have started
        time.sleep(0.2)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "resource_tracker" not in " ".join(p.cmdline())]
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(settle)  # still importing torch (short), or training their first runs (long)
    return proc, workers


def _gone(processes: list[psutil.Process], within: float) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=within)
    return not alive


@pytest.mark.parametrize("settle", [0.5, 6.0])
def test_workers_die_with_a_killed_parent_and_store_nothing(tmp_path, settle):
    results = tmp_path / "results"
    proc, workers = _start(results, settle)
    assert not (results / T.SLOW.name / "result.json").exists()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert _gone(workers, within=10), [w.pid for w in workers if w.is_running()]
    time.sleep(3)  # long enough for a surviving worker to finish a run and write it
    assert not (results / T.SLOW.name / "result.json").exists()


def test_sigterm_stops_within_seconds_cancels_queued_runs_and_reports(tmp_path):
    results = tmp_path / "results"
    proc, workers = _start(results)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 130
    assert f"[{T.SLOW.name}] stopped: 0 of 6 run(s) finished and stored" in err
    assert "interrupted; finished runs are stored" in err and "Traceback" not in err
    assert _gone(workers, within=5)
    time.sleep(3)
    assert not (results / T.SLOW.name / "result.json").exists()
