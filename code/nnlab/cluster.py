"""Train runs as Ray tasks on a cluster: the executor behind ``nnlab train --cluster ADDRESS``.

Ray is optional (``pip install "nnlab-course[cluster]"``) and is imported here only, only when a
cluster is asked for: the local process pool of :mod:`nnlab.runner` never touches it.

The driver (the process that runs ``nnlab train``) keeps the results store, as it does for
local runs. Each run becomes one task that receives the experiment (put in the cluster's
object store once), the variant name and the seed by value, runs the function it is handed
(``nnlab.runner._train_on_node``, the code of a local run) on whichever node Ray picks, and
returns its result and the node it ran on; a run that fails there (it diverged, the node has
no data) comes back as its exception with the node, so the other runs go on. A worker process
that dies (killed, out of memory, its node lost) is retried up to :data:`MAX_RETRIES` times;
an interrupted driver cancels every outstanding task.

:class:`LocalCluster` starts a one-node cluster on this machine's loopback interface, for
trying ``--cluster`` without a second machine, the tests and ``benchmarks/cluster_overhead.py``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

EXTRA = 'pip install "nnlab-course[cluster]"'
MAX_RETRIES = 2  # a run whose worker dies (killed, out of memory, node lost) is tried at most 3 times
SCRATCH_PREFIX = "nnlab-node-"  # a task's scratch folder on its node: nnlab-node-<worker pid>-<random>
CANCEL_GRACE = 15.0  # seconds cancelled tasks get to end (and remove their scratch folders) before they are killed


class ClusterError(RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or it cannot run a run as asked."""


class HeadLost(ClusterError):
    """The cluster's head stopped answering while runs were on the cluster."""


def require_ray():
    """The ``ray`` module, or :class:`ClusterError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"training on a cluster needs Ray, which is not installed: {EXTRA}") from None
    return ray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _reachable(host: str, port: int, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_address(ray, address: str) -> None:
    """Fail at once, with the reason, where ``ray.init`` would retry for many minutes: nothing
    listens at ``host:port``, or Ray would rewrite a loopback address to this machine's routable
    one (its default on Linux), where a cluster started on 127.0.0.1 does not listen."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", a Ray Client address, ...: Ray's own checks apply
    host, port = host.strip("[]"), int(port)
    if not _reachable(host, port):
        raise ClusterError(f"nothing answers at {address}: no Ray head listens there (start one with "
                           "`ray start --head --port=PORT`; see the README, *Training on a cluster*)")
    _check_token(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    rewritten = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "").lower() not in ("0", "false")
    if host in _LOOPBACK and rewritten and sys.platform.startswith("linux"):
        routable = ray.util.get_node_ip_address()
        if routable not in _LOOPBACK and not _reachable(routable, port):
            raise ClusterError(f"Ray would reach {address} at this machine's address {routable}:{port}, where "
                               "nothing listens: a cluster started on 127.0.0.1 needs "
                               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in this command's environment too")


def _driver_token() -> str | None:
    """The token this process would present, where Ray looks for it: ``$RAY_AUTH_TOKEN``, the
    file named by ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    with contextlib.suppress(OSError):
        return path.read_text().strip() or None
    return None


def _refused(address: str, token: str | None) -> bool:
    """Whether the head at ``address`` refuses a request carrying ``token`` (or none) as
    unauthenticated: one gRPC call, answered at once (``ray.init`` would retry it for about
    20 s and then blame the address). False whenever it cannot tell."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return False
    metadata = [("authorization", f"Bearer {token}")] if token else []
    channel = grpc.insecure_channel(address)
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=5.0, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.UNAUTHENTICATED
    except Exception:
        return False
    finally:
        channel.close()
    return False


def _check_token(address: str) -> None:
    """Fail at once, naming the token, when the cluster wants one this driver does not have
    (or has another one)."""
    if not _refused(address, None):
        return  # no authentication there, or nothing to tell
    token = _driver_token()
    how = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the cluster's token> in this command's environment (or "
           "put the token in ~/.ray/auth_token, or name its file with RAY_AUTH_TOKEN_PATH); `ray get-auth-token` "
           "on the head node prints it")
    if token is None:
        raise ClusterError(f"the Ray cluster at {address} requires token authentication and this driver has no "
                           f"token: {how}")
    if _refused(address, token):
        raise ClusterError(f"the Ray cluster at {address} refused this driver's authentication token (it is not "
                           f"the cluster's): {how}")
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "token":
        raise ClusterError(f"the Ray cluster at {address} requires token authentication and this driver has the "
                           "token but RAY_AUTH_MODE is not 'token', so Ray would not send it: set "
                           "RAY_AUTH_MODE=token in this command's environment")


def connect(address: str):
    """Connect this process to the Ray cluster at ``address`` (``host:port`` of its head, or
    ``auto`` for the cluster this node joined) unless it is connected already; returns ``ray``.

    ``ray.init`` makes SIGTERM exit the process at once; the handler in force before (the
    CLI's, which stops training as Ctrl-C does) is put back."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    import logging

    _check_address(ray, address)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address!r}: {_first_line(exc)} "
                           "(start one with `ray start --head`; see the README, *Training on a cluster*)") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return ray


def resolve_device(ray, device: str | None) -> str:
    """The device the runs train on: ``auto`` (or None) is CUDA when the cluster has a GPU,
    else the CPU; ``cuda[:N]`` becomes ``cuda``, the GPU Ray gives the task."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if device in (None, "auto"):
        return "cuda" if gpus else "cpu"
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r} ({exc}); use cpu, cuda or auto") from None
    if kind == "cuda" and not gpus:
        raise ClusterError(f"device {device!r} asked for, but no node of the cluster has a GPU; use --device cpu")
    return "cuda" if kind == "cuda" else device


def node_name() -> str:
    """``hostname (IP)`` of the node this code runs on, as Ray knows its address."""
    ip = None
    with contextlib.suppress(Exception):
        import ray

        ip = ray.util.get_node_ip_address()
    return f"{socket.gethostname()} ({ip})" if ip else socket.gethostname()


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives pickling (to travel back to the driver), else a
    :class:`ClusterError` with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return ClusterError(f"{type(exc).__name__}: {exc}")


def remove_dead_scratch(folder: str | None = None) -> list[Path]:
    """Remove the scratch folders (``nnlab-node-<pid>-*`` in ``folder``, the temporary folder
    by default) of worker processes that no longer exist on this node: a worker killed
    outright (out of memory, a forced cancel) had no chance to remove its own. Returns them."""
    import shutil

    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive, and not ours to judge
        return True
    return True


def _cancel(ray, refs: list) -> None:
    """Cancel tasks so that they can clean up: Ray raises KeyboardInterrupt in each running
    one (its scratch folder is removed as it unwinds); those still running after
    :data:`CANCEL_GRACE` seconds are killed."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)
    with contextlib.suppress(Exception):
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def _task(fn, shared, *args):
    """What runs on a node: ``fn(shared, *args)``, with where it ran and how it failed."""
    node = node_name()
    try:
        return node, fn(shared, *args), None
    except Exception as exc:  # a failure of this run (diverged, no data here): reported, not retried
        return node, None, _portable(exc)


_REMOTE = {}


def _remote(ray):
    if "task" not in _REMOTE:
        _REMOTE["task"] = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_task)
    return _REMOTE["task"]


def _gave_up(ray, exc: Exception) -> ClusterError:
    """One line for a task Ray could not complete: its worker died every time it was tried,
    or the task could not even start there (e.g. ``nnlab`` is not installed on the node)."""
    died = tuple(getattr(ray.exceptions, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError")
                 if hasattr(ray.exceptions, n))
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    why = f"its worker died {MAX_RETRIES + 1} times" if isinstance(exc, died) else "Ray could not run it"
    return ClusterError(f"{why}: {lines[-1] if lines else type(exc).__name__}")


def _check_fits(ray, cpus: float, gpus: float) -> None:
    """Refuse a task no node of the cluster could ever run (Ray would wait for one forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        biggest = max((r.get("CPU", 0) for r in nodes), default=0)
        raise ClusterError(f"a run needs {cpus:g} CPU(s){f' and {gpus:g} GPU(s)' if gpus else ''} on one node; "
                           f"the cluster's largest node has {biggest:g} CPU(s)")


def run(address: str, fn, shared, calls: Iterable[tuple[object, tuple, float, float]]) -> Iterator[tuple]:
    """Run ``fn(shared, *args)`` as one Ray task per call ``(key, args, num_cpus, num_gpus)``;
    yield ``(key, node, result, error)`` as the tasks end, in the order they end.

    ``shared`` (the experiment) goes to the cluster's object store once. ``error`` is the
    exception a task raised (not retried) or a :class:`ClusterError` for a task Ray gave up
    on (its worker died more than :data:`MAX_RETRIES` times, or it could not start); ``node`` is
    ``hostname (IP)`` where known. On any interruption of the consumer (Ctrl-C, SIGTERM
    turned into one, an error) every outstanding task is cancelled: interrupted, so that it
    removes its scratch folder, and killed if it has not ended within :data:`CANCEL_GRACE` s.
    """
    ray = connect(address)
    calls = list(calls)
    for cpus, gpus in {(c, g) for _, _, c, g in calls}:
        _check_fits(ray, cpus, gpus)
    task = _remote(ray)
    pending: dict = {}
    try:
        ref = ray.put(shared)
        for key, args, cpus, gpus in calls:
            pending[task.options(num_cpus=cpus, num_gpus=gpus).remote(fn, ref, *args)] = key
        head, silent = _head_address(ray, address), 0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # wakes up for signals
            silent = 0 if done or head is None or _reachable(*head, timeout=2.0) else silent + 1
            if silent >= 2:  # Ray's own client would wait 60 s, then end the process without a word
                raise HeadLost(f"the Ray head at {address} stopped answering while {len(pending)} run(s) were on "
                               "the cluster: they are lost, the runs that ended before are stored; restart the "
                               "cluster (`ray start --head`, then the nodes) and run the same command again to "
                               "train the rest")
            for ref_done in done:
                key = pending.pop(ref_done)
                try:
                    node, result, error = ray.get(ref_done)
                except ray.exceptions.RayError as exc:  # its worker died every time, nnlab is missing there, ...
                    node, result, error = None, None, _gave_up(ray, exc)
                yield key, node, result, error
    except BaseException as exc:
        if pending and not isinstance(exc, HeadLost):  # without a head there is nothing to cancel with
            _cancel(ray, list(pending))
        raise


def _head_address(ray, address: str) -> tuple[str, int] | None:
    """``(host, port)`` of the head's GCS this driver is connected to, or None if unknown."""
    with contextlib.suppress(Exception):
        host, _, port = (ray.get_runtime_context().gcs_address or address).rpartition(":")
        return host.strip("[]"), int(port)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: on Linux the kernel sends it SIGTERM when its parent dies
    (``ray start --block`` then stops the cluster), so no cluster outlives a killed test."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalCluster:
    """A one-node Ray cluster on this machine, every socket on the loopback interface
    (127.0.0.1), with token authentication: ``ray start --head --block`` in a child process.

    Ray replaces a ``--node-ip-address`` of 127.0.0.1 by the machine's routable address (and
    binds some servers to every interface) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``;
    that variable, the token and ``RAY_USAGE_STATS_ENABLED=0`` are in ``env``, which a
    driver needs too (``ray.init`` rewrites 127.0.0.1 in the address the same way). Use it
    as a context manager, or :meth:`start` and :meth:`stop`::

        with LocalCluster(num_cpus=2) as c:
            os.environ.update(c.env)
            run_experiment("mlp-100", cluster=c.address)
    """

    def __init__(self, num_cpus: int | None = None, *, temp_dir: str | None = None, extra_env: dict | None = None):
        import secrets

        self.num_cpus = num_cpus or os.cpu_count() or 1
        # short: Ray's Unix sockets live under it, and a socket path has at most 107 bytes
        self.temp_dir = Path(temp_dir or tempfile.mkdtemp(prefix="nnray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self._own_temp = temp_dir is None
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None
        self.log = self.temp_dir / "ray-start.log"

    def command(self) -> list[str]:
        import importlib.util

        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
               "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--num-cpus={self.num_cpus}",
               "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
               f"--dashboard-agent-listen-port={_free_port()}"]  # not the fixed default, 52365
        if importlib.util.find_spec("grpc"):  # ray[default] starts a Ray Client server, by default on port 10001
            cmd.append(f"--ray-client-server-port={_free_port()}")
        return cmd

    def start(self, timeout: float = 120.0) -> str:
        """Start the head and wait until it accepts drivers; returns its address.

        Ray is not imported into this process: it reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
        once, on import, so a driver here must have ``env`` in ``os.environ`` first."""
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            require_ray()  # raises, naming the extra
        env = {**os.environ, **self.extra_env, **self.env}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        ready = self.temp_dir / "ray_current_cluster"  # written once the head is up
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise ClusterError(f"the local Ray head did not start within {timeout:.0f} s; its log ends:\n{tail}")
            time.sleep(0.2)
        return self.address

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to ``ray start --block``, which stops every process of the cluster; kill it
        if it has not ended within ``timeout``. Removes the temporary folder it created.

        A driver in this process is disconnected first: the head waits up to 30 s for a
        connected driver before it stops."""
        ray = sys.modules.get("ray")
        with contextlib.suppress(Exception):
            if ray is not None and ray.is_initialized() and \
                    ray.get_runtime_context().gcs_address == self.address:
                ray.shutdown()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_temp:
            import shutil

            for _ in range(10):  # a process of the cluster may still be closing its log files
                shutil.rmtree(self.temp_dir, ignore_errors=True)
                if not self.temp_dir.exists():
                    break
                time.sleep(0.5)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
