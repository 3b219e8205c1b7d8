"""The wall around a submission: bubblewrap, cgroups and resource limits.

Each submission runs once, in its own sandbox (:func:`run`), made with bubblewrap
(``bwrap``): its own mount, pid, network, IPC and UTS namespaces, an unprivileged uid, and
``--die-with-parent``. It sees the interpreter and the installed packages read-only (with
the packages' bundled data files hidden), ``nnlab`` read-only, its own files read-only at
``/submission``, and a private ``/tmp`` and ``/dev/shm`` of bounded size: no data set, no
results, no course folder, no home folder, no other submission, no pipe of the grader's but
the one it answers on. A cgroup (v2, or v1's memory, pids and cpuacct controllers) bounds
memory (``/tmp`` and ``/dev/shm`` included), processes and CPU time of everything inside;
where none can be made, per-process rlimits do, and :func:`probe` says so. What comes
back is one document on a pipe, capped in size, and checked by the caller as hostile input.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nnlab

MAX_SUBMISSION_BYTES = 200 << 20
MAX_OUTPUT_BYTES = 16 << 20  # an answer carries at most 2**20 values (about 11 MiB of base64)
STDERR_TAIL = 20_000
BASELINE_MIB = 768  # the interpreter and torch, on top of a problem's memory limit, for the cgroup
DATA_SUFFIXES = (".csv", ".csv.gz", ".gz", ".bz2", ".xz", ".zip", ".npz", ".npy", ".pkl", ".pickle", ".mat",
                 ".arff", ".h5", ".hdf5", ".parquet", ".feather", ".idx", "-ubyte", ".pt",
                 ".safetensors", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dat", ".data")


class SandboxUnavailable(RuntimeError):
    """Bubblewrap is missing or cannot make namespaces here; the message says how to fix it."""


@dataclass(frozen=True)
class Isolation:
    """What contains a submission on this machine."""

    tool: str                       # "bubblewrap 0.8.0", or "" where none works
    uid: str                        # how the sandbox's uid is made
    cgroup: str                     # "cgroup v1 (memory, pids, cpuacct)", "cgroup v2", or ""
    missing: tuple[str, ...] = ()   # protections not in force

    def describe(self, limits) -> dict:
        """The report's "isolation" block, in plain words."""
        bounds = (f"memory {limits.memory_mib} MiB beyond the interpreter (whole sandbox, /tmp and /dev/shm "
                  f"included: {limits.memory_mib + BASELINE_MIB} MiB), {limits.max_processes} processes, "
                  f"CPU {limits.cpu_seconds} s, wall clock {limits.wall_seconds} s")
        return {
            "sandbox": f"{self.tool}: own mount, pid, network, IPC and UTS namespaces; {self.uid}; "
                       "dies with the grader" if self.tool else "none",
            "files": "read-only: the interpreter, installed packages (bundled data files hidden), nnlab, the "
                     f"submission; writable: private /tmp and /dev/shm of {limits.tmp_mib} MiB each",
            "limits": bounds + (f", by {self.cgroup} and rlimits" if self.cgroup else ", by rlimits per process"),
            "data": "none: the sandbox only builds and exports the model; training and test images stay outside",
            "trust": "every certified number is computed by the grader from the exported graph, outside the sandbox",
            "not in force": ", ".join(self.missing) or "nothing: every protection above is in force",
        }


@functools.lru_cache(maxsize=1)
def _bwrap() -> tuple[str, str]:
    path = shutil.which("bwrap")
    if path is None:
        return "", ""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "", ""
    return path, out or "bubblewrap"


def _cgroup_kind() -> str:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.is_file():
        ok = {"memory", "pids"} <= set(Path("/sys/fs/cgroup/cgroup.subtree_control").read_text().split()) \
            if Path("/sys/fs/cgroup/cgroup.subtree_control").is_file() else False
        return "cgroup v2 (memory, pids, cpu)" if ok and os.access("/sys/fs/cgroup", os.W_OK) else ""
    v1 = [Path("/sys/fs/cgroup") / c for c in ("memory", "pids", "cpuacct")]
    return "cgroup v1 (memory, pids, cpuacct)" if all(p.is_dir() and os.access(p, os.W_OK) for p in v1) else ""


@functools.lru_cache(maxsize=1)
def probe() -> Isolation:
    """Find out, once per process, which protections this machine can give."""
    path, version = _bwrap()
    if not path:
        return Isolation("", "", _cgroup_kind(), ("bubblewrap (bwrap) is not installed",))
    root = os.geteuid() == 0
    uid = ("a fresh unprivileged uid per submission (root gives it up before the submission's code runs)"
           if root else "uid 65534 in its own user namespace")
    try:
        ok = subprocess.run([path, *_namespaces(root), "--ro-bind", "/", "/", "true"], capture_output=True,
                            timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        return Isolation("", "", _cgroup_kind(), ("bubblewrap cannot create namespaces on this system",))
    clean_up_stale()
    cgroup = _cgroup_kind()
    missing = () if cgroup else ("a cgroup: memory, processes and CPU are bounded per process only",)
    return Isolation(version, uid, cgroup, missing)


def require(strict: bool) -> Isolation:
    """The isolation in force; with ``strict``, refuse to grade without all of it."""
    iso = probe()
    if strict and iso.missing:
        raise SandboxUnavailable(f"--require-isolation: missing {'; '.join(iso.missing)}. Install bubblewrap "
                                 "(Debian/Ubuntu: apt-get install bubblewrap) and grade as root or where "
                                 "cgroups are delegated to you")
    if not iso.tool:
        raise SandboxUnavailable(f"no sandbox: {'; '.join(iso.missing)}. Install bubblewrap (Debian/Ubuntu: "
                                 "apt-get install bubblewrap; Fedora: dnf install bubblewrap) and check that "
                                 "`bwrap --ro-bind / / true` runs")
    return iso


def _namespaces(root: bool) -> list[str]:
    common = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
              "--die-with-parent", "--new-session"]
    if root:  # no user namespace: the sandbox gives up root itself (see _sandboxed._drop_root)
        return [*common, "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [*common, "--unshare-user", "--uid", "65534", "--gid", "65534"]


def _read_only_roots() -> list[Path]:
    """The interpreter, its packages and nnlab: nothing else of this machine's files."""
    roots = {Path(p).resolve() for p in {sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix}}
    roots.add(Path(nnlab.__file__).resolve().parent)
    exe = Path(sys.executable)
    roots.add(exe.parent.resolve())
    kept = []
    for r in sorted(roots, key=lambda p: len(p.parts)):
        if not any(r == k or k in r.parents for k in kept) and r != Path("/"):
            kept.append(r)
    return kept


def _unused_site_packages() -> list[Path]:
    """site-packages folders inside the bound prefixes that this interpreter does not import
    from (a base installation's own, under a virtual environment)."""
    used = {Path(p).resolve() for p in sys.path if p}
    found = []
    for root in _read_only_roots():
        for sp in root.glob("lib*/python*/site-packages"):
            if sp.resolve() not in used:
                found.append(sp)
    return found


def _has_code(folder: str, files: list[str]) -> bool:
    return any(f.endswith((".py", ".so", ".pyd", ".pth")) or ".so." in f for f in files) \
        or any(os.path.isdir(os.path.join(folder, d)) for d in os.listdir(folder))


@functools.lru_cache(maxsize=1)
def hidden_paths() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the sandbox must not see of the bound trees: (folders, files). Unused
    site-packages, and the packages' bundled data files (data sets, arrays, images): a
    folder of data and no code goes whole, otherwise file by file."""
    folders = [str(p) for p in _unused_site_packages()]
    files = []
    for root in _read_only_roots():
        for folder, subdirs, names in os.walk(root):
            if any(folder == f or folder.startswith(f + "/") for f in folders):
                subdirs[:] = []
                continue
            data = [n for n in names if n.lower().endswith(DATA_SUFFIXES)]
            if not data:
                continue
            if _has_code(folder, names):
                files += [os.path.join(folder, n) for n in data]
            else:
                folders.append(folder)
                subdirs[:] = []
    return tuple(sorted(folders)), tuple(sorted(files))


def _system_binds() -> list[str]:
    args = []
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    if Path("/etc/ld.so.cache").is_file():
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def _tree_binds(empty: Path) -> list[str]:
    """Read-only binds of the interpreter, packages and nnlab, each parent folder made
    traversable (bubblewrap makes missing parents 0700); bundled data files hidden."""
    args, made = [], {Path("/"), Path("/usr"), Path("/etc")}
    roots = _read_only_roots()
    for root in roots:
        for parent in reversed(root.parents):
            if parent not in made and not any(parent == r or r in parent.parents for r in roots):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += ["--ro-bind", str(root), str(root)]
    folders, files = hidden_paths()
    for d in folders:
        args += ["--ro-bind", str(empty.parent / "emptydir"), d]
    for f in files:
        args += ["--ro-bind", str(empty), f]
    return args


def command(limits, work: Path, task: dict, root: bool) -> list[str]:
    """The whole bwrap command line for one submission (``work`` holds ``submission/``)."""
    path, _ = _bwrap()
    tmp = str(limits.tmp_mib << 20)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "OMP_NUM_THREADS": str(task["threads"]), "MKL_NUM_THREADS": str(task["threads"]),
           "OPENBLAS_NUM_THREADS": str(task["threads"]), "CUDA_VISIBLE_DEVICES": ""}
    args = [path, *_namespaces(root), *_system_binds(), *_tree_binds(work / "empty"),
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", tmp, "--tmpfs", "/tmp",
            "--perms", "1777", "--size", tmp, "--tmpfs", "/dev/shm",
            "--ro-bind", str(work / "submission"), "/submission", "--chdir", "/tmp", "--clearenv"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    return [*args, "--", sys.executable, "-I", "-B", "-m", "nnlab.grade._sandboxed", json.dumps(task)]


class Cgroup:
    """One submission's cgroup: memory, processes and CPU of everything in the sandbox."""

    def __init__(self, kind: str, limits):
        self.kind, self.dirs = kind, []
        name = f"nnlab-grade-{os.getpid()}-{random.randrange(1 << 30)}"
        memory = (limits.memory_mib + BASELINE_MIB) << 20
        try:
            if kind.startswith("cgroup v2"):
                d = Path("/sys/fs/cgroup") / name
                d.mkdir()
                self.dirs = [d]
                (d / "memory.max").write_text(str(memory))
                (d / "memory.swap.max").exists() and (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(limits.max_processes))
            elif kind.startswith("cgroup v1"):
                for c in ("memory", "pids", "cpuacct"):
                    d = Path("/sys/fs/cgroup") / c / name
                    d.mkdir()
                    self.dirs.append(d)
                (self.dirs[0] / "memory.limit_in_bytes").write_text(str(memory))
                with contextlib.suppress(OSError):  # memory and swap together, where swap is accounted
                    (self.dirs[0] / "memory.memsw.limit_in_bytes").write_text(str(memory))
                (self.dirs[1] / "pids.max").write_text(str(limits.max_processes))
        except OSError:
            self.remove()
            self.kind = ""

    def enter(self) -> None:
        """In the child, before bwrap starts: join every controller."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def cpu_seconds(self) -> float:
        try:
            if self.kind.startswith("cgroup v2"):
                stat = dict(line.split() for line in (self.dirs[0] / "cpu.stat").read_text().splitlines())
                return int(stat["usage_usec"]) / 1e6
            if self.kind.startswith("cgroup v1"):
                return int((self.dirs[2] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, KeyError, ValueError):
            pass
        return 0.0

    def out_of_memory(self) -> bool:
        try:
            if self.kind.startswith("cgroup v2"):
                events = dict(line.split() for line in (self.dirs[0] / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            if self.kind.startswith("cgroup v1"):
                control = dict(line.split() for line in (self.dirs[0] / "memory.oom_control").read_text().splitlines())
                return int(control.get("oom_kill", 0)) > 0
        except (OSError, ValueError):
            pass
        return False

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, until none is left."""
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def clean_up_stale() -> None:
    """Sandbox folders and cgroups of grading processes that no longer exist (killed with
    SIGKILL, say, which no handler sees)."""
    found = {int(m.group(1)) for p in [*Path(tempfile.gettempdir()).glob("nnlab-sandbox-*-*"),
                                        *Path("/sys/fs/cgroup").glob("*/nnlab-grade-*-*")]
             if (m := re.match(r"nnlab-(?:sandbox|grade)-(\d+)-", p.name))}
    clean_up_after([pid for pid in found if not Path(f"/proc/{pid}").exists()])


def clean_up_after(pids: list[int]) -> None:
    """What killed grading processes left: their sandboxes' cgroups and folders."""
    cgroups = Path("/sys/fs/cgroup")
    for pid in pids:
        found = [*cgroups.glob(f"*/nnlab-grade-{pid}-*"), *cgroups.glob(f"nnlab-grade-{pid}-*")]
        if found:  # v1 has one folder per controller, v2 one in all
            left = Cgroup.__new__(Cgroup)
            left.kind, left.dirs = "", found
            left.remove()
        for d in Path(tempfile.gettempdir()).glob(f"nnlab-sandbox-{pid}-*"):
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class SandboxRun:
    """How a sandbox ended and what it returned (still untrusted)."""

    returncode: int | None
    seconds: float
    cpu_seconds: float
    stderr: str
    output: bytes
    stopped: str = ""   # why the grader stopped it: "wall", "cpu", "output", "memory" or ""
    notes: list[str] = field(default_factory=list)


def copy_submission(files: dict[str, Path], dest: Path) -> None:
    """Copy a submission's regular files (no links) into ``dest``, read-only."""
    dest.mkdir(parents=True)
    total = 0
    for name, src in files.items():
        total += src.stat().st_size
        if total > MAX_SUBMISSION_BYTES:
            raise ValueError(f"the submission is larger than {MAX_SUBMISSION_BYTES >> 20} MiB")
        shutil.copyfile(src, dest / name)
        (dest / name).chmod(0o444)
    dest.chmod(0o555)


def _reader(stream, keep: bytearray, cap: int, tail: bool, overflow: threading.Event) -> None:
    while True:
        chunk = stream.read(1 << 16)
        if not chunk:
            return
        keep += chunk
        if len(keep) > cap:
            if tail:
                del keep[:len(keep) - cap]
            else:
                overflow.set()
                del keep[cap:]


def _own_processes() -> int:
    """Processes and threads of this user now (RLIMIT_NPROC counts them all)."""
    uid, count = os.getuid(), 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if d.stat().st_uid == uid:
                    count += len(os.listdir(d / "task"))
    return count


def _limit_child(limits, cgroup: Cgroup, nproc: int) -> None:
    """In the forked child, before exec: join the cgroup, then set rlimits everything inherits."""
    cgroup.enter()
    cpu = limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.tmp_mib << 20, limits.tmp_mib << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # as root, the sandbox's fresh uid owns no other process; otherwise the count is the user's
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def run(files: dict[str, Path], task: dict, limits, stop: threading.Event | None = None) -> SandboxRun:
    """Run one submission (``files``: name -> path) in a fresh sandbox with ``task``; return
    what it printed on its answer pipe (at most :data:`MAX_OUTPUT_BYTES`) and how it ended.
    ``stop`` (set by the grader on Ctrl-C) kills it at once."""
    iso = probe()
    root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix=f"nnlab-sandbox-{os.getpid()}-"))
    work.chmod(0o711)
    cgroup = Cgroup(iso.cgroup, limits)
    try:
        copy_submission(files, work / "submission")
        (work / "empty").write_bytes(b"")
        (work / "empty").chmod(0o444)
        (work / "emptydir").mkdir(mode=0o555)
        task = {**task, "uid": random.randrange(200_000, 1_000_000) if root else None}
        nproc = limits.max_processes if root else _own_processes() + limits.max_processes
        return _supervise(command(limits, work, task, root), limits, cgroup, stop, nproc)
    finally:
        cgroup.remove()
        shutil.rmtree(work, ignore_errors=True)


def _why_stop(t0: float, limits, cgroup: Cgroup, overflow: threading.Event, stop) -> str:
    if time.monotonic() - t0 > limits.wall_seconds:
        return "wall"
    if cgroup.kind and cgroup.cpu_seconds() > limits.cpu_seconds:
        return "cpu"
    if overflow.is_set():
        return "output"
    return "interrupted" if stop is not None and stop.is_set() else ""


def _supervise(cmd: list[str], limits, cgroup: Cgroup, stop: threading.Event | None, nproc: int) -> SandboxRun:
    out, err, overflow = bytearray(), bytearray(), threading.Event()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=lambda: _limit_child(limits, cgroup, nproc))
    readers = [threading.Thread(target=_reader, args=(proc.stdout, out, MAX_OUTPUT_BYTES, False, overflow),
                                daemon=True),
               threading.Thread(target=_reader, args=(proc.stderr, err, STDERR_TAIL, True, overflow), daemon=True)]
    for r in readers:
        r.start()
    stopped = ""
    try:
        while proc.poll() is None:
            stopped = _why_stop(t0, limits, cgroup, overflow, stop)
            if stopped:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
    finally:  # stopped, finished, or the grader itself interrupted: nothing is left running
        if stopped or proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            cgroup.kill()
    proc.wait()
    cgroup.kill()  # anything the submission left behind
    for r in readers:
        r.join(timeout=5)
    if not stopped and overflow.is_set():  # the last chunks can be read after the process ended
        stopped = "output"
    if not stopped and cgroup.out_of_memory():
        stopped = "memory"
    return SandboxRun(proc.returncode, time.monotonic() - t0, cgroup.cpu_seconds(),
                      bytes(err).decode(errors="replace"), bytes(out), stopped)
