"""Running one submission in a contained child process, and what the parent gives it.

The parent writes the inputs a child may see into a data folder (:func:`write_inputs`:
training and validation images and labels, test images, never test labels), copies the
submission's files into a fresh temporary folder, and asks the grading :class:`Server`
(``python -m nnlab.grade._child --serve``, started with a minimal environment and, where
Linux allows it, a network namespace of its own: ``unshare -rn``) to fork a child for it
(:func:`run_child`), killed at the wall-clock limit. The child sets its CPU-time, memory
and file-size limits before it imports the submission.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nnlab
from nnlab.grade.problem import Problem

MAX_SUBMISSION_BYTES = 200 << 20


@functools.lru_cache(maxsize=1)
def network_wrapper() -> tuple[str, ...]:
    """``("unshare", "-rn")`` when a user and network namespace can be made here, else ``()``."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    try:
        ok = subprocess.run([unshare, "-rn", sys.executable, "-c", "pass"], capture_output=True,
                            timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (unshare, "-rn") if ok else ()


def isolation(problem: Problem) -> dict:
    """What contains a submission on this machine, in plain words (goes into every report)."""
    lim = problem.limits
    net = ("none: the child runs in its own Linux network namespace (unshare -rn)" if network_wrapper()
           else "no network isolation available on this system (unshare -rn failed); sockets are "
                "refused by the audit hook only")
    return {
        "process": "a separate child process per submission, in its own temporary folder",
        "limits": f"CPU {lim.cpu_seconds} s, memory {lim.memory_mib} MiB (address space beyond the "
                  f"grader's start-up), wall clock {lim.wall_seconds} s, files 512 MiB",
        "environment": "minimal: interpreter PATH, PYTHONHASHSEED=0, thread counts; nothing inherited",
        "network": net,
        "files": "an audit hook refuses opening files outside the submission's folder (the Python "
                 "installation, nnlab and the inputs are readable), sockets and subprocesses",
        "test labels": "never given to the child; accuracy is computed by the grader from returned logits",
        "weights": "read and written as safetensors only",
    }


@dataclass
class Inputs:
    """What :func:`write_inputs` wrote, and the test labels it kept."""

    folder: Path
    test_labels: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    files: list[str] = field(default_factory=list)


def write_inputs(problem: Problem, folder: Path) -> Inputs:
    """Write the arrays a child may read into ``folder``: training and validation images and
    labels (not in ``weights`` mode) and test images, as ``.npy``; the test labels are kept."""
    source = problem.source()
    folder.mkdir(parents=True, exist_ok=True)
    x_test, y_test = source.load("test")
    if problem.test_size is not None:
        x_test, y_test = x_test[:problem.test_size], y_test[:problem.test_size]
    arrays = {"test_x": x_test}
    if problem.budget.mode != "weights":
        x, y = source.load("train")
        if problem.train_size is not None:
            x, y = x[:problem.train_size], y[:problem.train_size]
        vx, vy = source.load("val")
        arrays.update(train_x=x, train_y=y, val_x=vx, val_y=vy)
    files = []
    for name, t in arrays.items():
        a = t.numpy()
        a = a.astype(np.float32) if name.endswith("_x") else a.astype(np.int64)
        np.save(folder / f"{name}.npy", np.ascontiguousarray(a))
        files.append(f"{name}.npy")
    for p in [folder, *folder.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o444)
    return Inputs(folder, y_test.numpy().astype(np.int64), tuple(source.input_shape), int(source.num_classes),
                  sorted(files))


def child_env(threads: int, home: Path) -> dict[str, str]:
    """The whole environment a child gets: nothing of the grader's own."""
    t = str(threads)
    return {"PATH": str(Path(sys.executable).parent), "PYTHONHASHSEED": "0",
            "PYTHONPATH": str(Path(nnlab.__file__).resolve().parent.parent),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
            "CUDA_VISIBLE_DEVICES": "", "NNLAB_RESULTS": str(home / "results")}


@dataclass
class ChildRun:
    """How a child ended and what it left."""

    returncode: int | None
    timed_out: bool
    seconds: float
    stderr: str
    result: dict | None
    out: Path
    stage: str = "start"


def copy_submission(files: dict[str, Path], dest: Path) -> None:
    """Copy a submission's regular files (no links) into ``dest``."""
    dest.mkdir(parents=True)
    total = 0
    for name, src in files.items():
        total += src.stat().st_size
        if total > MAX_SUBMISSION_BYTES:
            raise ValueError(f"the submission is larger than {MAX_SUBMISSION_BYTES >> 20} MiB")
        shutil.copyfile(src, dest / name)


class Server:
    """The grading server (``python -m nnlab.grade._child --serve``): started once, with the
    minimal environment and, where possible, in its own network namespace; it imports torch
    once and forks a child per submission. If a submission brings it down, the next
    submission starts a new one."""

    def __init__(self, threads: int):
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.home: Path | None = None
        self.lock = threading.Lock()
        self.waiting: dict[int, queue.Queue] = {}
        self.ids = itertools.count()

    def _start(self) -> None:
        self.home = scratch("nnlab-grade-server-")
        cmd = [*network_wrapper(), sys.executable, "-B", "-m", "nnlab.grade._child", "--serve"]
        log = open(self.home / "server-stderr.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=self.home, env=child_env(self.threads, self.home),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=True)
        log.close()
        ready: queue.Queue = queue.Queue()
        self.waiting[-1] = ready
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        try:
            msg = ready.get(timeout=300)
        except queue.Empty:
            msg = {}
        if not msg.get("ready"):
            log = (self.home / "server-stderr.txt").read_text(errors="replace").strip().splitlines()
            raise RuntimeError("the grading server (python -m nnlab.grade._child --serve) did not start"
                               + (f": {log[-1]}" if log else " within 300 s")
                               + "; check that this Python can import torch and nnlab")

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            box = self.waiting.get(-1 if msg.get("ready") else msg.get("id"))
            if box is not None:
                box.put(msg)
        for box in list(self.waiting.values()):  # the server has gone: wake everyone
            box.put({"gone": True})

    def run(self, folder: Path, wall_seconds: float) -> tuple[int | None, bool]:
        """Grade ``folder`` in a forked child; its exit status (None if unknown) and whether the
        wall-clock limit stopped it."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            ident = next(self.ids)
            box: queue.Queue = queue.Queue()
            self.waiting[ident] = box
            try:
                self.proc.stdin.write((json.dumps({"id": ident, "folder": str(folder)}) + "\n").encode())
                self.proc.stdin.flush()
            except OSError:
                return None, False
        try:
            msg = box.get(timeout=300)
            if "pid" not in msg:
                return None, False
            pid = msg["pid"]
            try:
                msg = box.get(timeout=wall_seconds)
            except queue.Empty:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                msg = box.get(timeout=60)
                return msg.get("status"), True
            return msg.get("status"), False
        except queue.Empty:
            return None, False
        finally:
            self.waiting.pop(ident, None)

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(self.proc)
                self.proc.wait()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


def run_child(problem: Problem, files: dict[str, Path], inputs: Inputs, work: Path, server: Server) -> ChildRun:
    """Run one submission (``files``: name in the submission -> path) in ``work``, a fresh folder."""
    copy_submission(files, work / "submission")
    (work / "out").mkdir()
    r = problem.rules
    task = {"threads": problem.threads, "seeds": list(problem.seeds), "mode": problem.budget.mode,
            "recipe": {**problem.budget.recipe.to_dict(), "threads": problem.threads},
            "budget_limits": {k: getattr(problem.budget, k) for k in ("max_epochs", "min_batch_size", "max_batch_size")
                              if getattr(problem.budget, k) is not None},
            "entry": problem.entry,
            "input_shape": list(inputs.input_shape), "num_classes": inputs.num_classes, "data": str(inputs.folder),
            "limits": {"cpu_seconds": problem.limits.cpu_seconds, "memory_mib": problem.limits.memory_mib},
            "rules": {"name": r.name, "allowed": sorted(r.allowed), "required": sorted(r.required),
                      "max_hidden_units": r.max_hidden_units, "min_hidden_layers": r.min_hidden_layers,
                      "max_parameters": r.max_parameters}}
    (work / "task.json").write_text(json.dumps(task))
    t0 = time.perf_counter()
    returncode, timed_out = server.run(work, problem.limits.wall_seconds)
    seconds = time.perf_counter() - t0
    result = None
    path = work / "out" / "result.json"
    if path.is_file():
        try:
            result = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            result = None
    stage = work / "out" / "stage"
    err = work / "stderr.txt"
    return ChildRun(returncode, timed_out, seconds,
                    err.read_bytes()[-20_000:].decode(errors="replace") if err.is_file() else "",
                    result if isinstance(result, dict) else None, work / "out",
                    stage.read_text()[:20] if stage.is_file() else "start")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
