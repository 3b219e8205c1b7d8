"""Training on a Ray cluster (`nnlab train --cluster ADDRESS`), on a real one-node cluster
that these tests start on the loopback interface and stop again.

The command trains each run as a Ray task and stores it itself: the same numbers and weights
as a local run, the node that trained it, a worker killed mid-run retried and its run stored
once, a run that fails on a node reported with the node while the others are stored, SIGTERM
cancelling the tasks. Every socket of the cluster listens on 127.0.0.1 only, and no process
of it outlives the tests.
Without Ray, `--cluster` is one line that names the extra, and local training never imports it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import tiny_experiments as T

SCRIPT = str(Path(T.__file__))
TESTS = str(Path(T.__file__).parent)
HAVE_RAY = importlib.util.find_spec("ray") is not None
IN_CI = os.environ.get("CI") == "true"
needs_ray = pytest.mark.skipif(not HAVE_RAY and not IN_CI,
                               reason='Ray is not installed (pip install "nnlab-course[cluster]"); CI installs it '
                                      "and runs these tests")
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "threads", "cpu_capability", "data_fingerprint")
NODE = f"{socket.gethostname()} (127.0.0.1)"
LISTENING: dict[int, list[tuple[str, str, int]]] = {}  # pid -> (name, ip, port), from every snapshot


def _processes(cluster) -> list[psutil.Process]:
    """`ray start --block` and every process below it: the whole cluster, workers included."""
    head = psutil.Process(cluster.process.pid)
    return [head, *head.children(recursive=True)]


def _snapshot(cluster, driver: int | None = None) -> list[psutil.Process]:
    """Record the cluster's processes and the listening sockets of them and of the driver."""
    procs = _processes(cluster)
    cluster.seen.update({p.pid: p for p in procs})
    others = []
    with contextlib.suppress(psutil.NoSuchProcess):
        others = [psutil.Process(driver)] if driver else []
    for p in procs + others:
        try:
            listening = [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
        known = LISTENING.setdefault(p.pid, [])
        known += [s for s in listening if s not in known]
    return procs


DRIVER = textwrap.dedent("""\
    # The tiny experiment, a residual network of the course's own module (course_models.py,
    # next to this script: Ray puts the script's folder on the nodes' path), and one that
    # trains a good variant and one that blows up, and a regression on a line of three inputs.
    import sys
    from dataclasses import replace
    sys.path.insert(0, {tests!r})
    import numpy as np
    import tiny_experiments as T
    from nnlab import experiments as E
    from nnlab.cli import main
    from nnlab.data import ArrayData
    from nnlab.rules import NONE
    from nnlab.train import TrainConfig

    bad = replace(T.TINY.train, optimizer="sgd", lr=1e6)
    E.register(T.TINY)
    E.register(replace(T.TINY, name="test-tiny-factory", seeds=(0,), train=replace(T.TINY.train, epochs=1), rules=NONE,
                       variants=(E.Variant("resnet", factory="course_models:small_resnet", kwargs={{"width": 4}}),)))
    E.register(replace(T.TINY, name="test-tiny-diverges", seeds=(0,),
                       variants=(T.TINY.variants[0], E.Variant("blows-up", T.TINY.variants[0].spec, train=bad))))
    x = np.random.default_rng(0).normal(size=(120, 3)).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5], dtype="float32")
    E.register(E.Experiment("test-tiny-regression", "A line of three inputs.", "tests", (E.Variant("linear", ("linear 1",)),),
                            TrainConfig(task="regression", epochs=3, batch_size=16, optimizer="adam", lr=0.1), seeds=(0,),
                            data=ArrayData("tiny-line", train=(x[:80], y[:80]), test=(x[80:], y[80:]), targets="values"),
                            save_weights=False))
    names = (T.TINY.name, "test-tiny-factory", "test-tiny-regression", "test-tiny-diverges", T.TINY.name)
    codes = [main(["train", name, *sys.argv[1:]]) for name in names]
    sys.exit(max(codes))
    """)

COURSE_MODELS = textwrap.dedent("""\
    from torch import nn


    class Residual(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.conv = nn.Conv2d(width, width, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(x + self.conv(x))


    def small_resnet(input_shape, classes, width=4):
        channels, height, width_px = input_shape
        flat = width * ((height + 1) // 2) * ((width_px + 1) // 2)
        return nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(), Residual(width),
                             nn.Flatten(), nn.Linear(flat, classes))
    """)


def _train(cluster, results: Path, *args: str, script: list[str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(cluster.env if cluster else {}), "NNLAB_RESULTS": str(results)}
    return subprocess.Popen([sys.executable, *(script or [SCRIPT, "train"]), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The reference runs, trained locally (one process) while the cluster starts: results folder."""
    results = tmp_path_factory.mktemp("local")
    procs = [_train(None, results, T.TINY.name, "--jobs", "1", "--device", "cpu"),
             _train(None, results, T.HELD.name, "--seeds", "0", "--jobs", "1", "--device", "cpu")]
    done = []

    def finished() -> Path:
        if not done:
            for p in procs:
                code, err = _finish(p)
                assert code == 0, err[-3000:]
            done.append(True)
        return results

    yield finished
    for p in procs:
        if p.poll() is None:
            p.kill()


@pytest.fixture(scope="module")
def cluster(local):
    assert HAVE_RAY, 'CI=true: Ray must be installed there (requirements.txt installs "ray[default]")'
    from nnlab.cluster import LocalCluster

    c = LocalCluster(num_cpus=2, extra_env={"NNLAB_DATA": os.environ["NNLAB_DATA"]})
    c.start()
    c.seen = {}  # pid -> psutil.Process of every cluster process any test saw
    try:
        yield c
    finally:
        c.stop()
        for p in c.seen.values():  # only if a test failed before stopping it: by pid, never by name
            if p.is_running():
                p.kill()


@pytest.fixture(scope="module")
def trained(cluster, tmp_path_factory):
    """`nnlab train NAME --cluster ADDRESS` of the tiny experiment, of the course's factory model,
    of a regression, of one with a variant that diverges, then of the tiny one again (nothing
    left to train), in one driver process:
    ``(results folder, exit code, standard error)``."""
    folder = tmp_path_factory.mktemp("driver")
    (folder / "driver.py").write_text(DRIVER.format(tests=TESTS))
    (folder / "course_models.py").write_text(COURSE_MODELS)
    results = folder / "results"
    proc = _train(cluster, results, "--cluster", cluster.address, "--device", "cpu",
                  script=[str(folder / "driver.py")])
    while proc.poll() is None:
        _snapshot(cluster, proc.pid)
        time.sleep(0.5)
    return (results, *_finish(proc))


def _runs(results: Path, name: str) -> dict:
    return json.loads((results / name / "result.json").read_text())["runs"]


def _same_runs(local: dict, remote: dict) -> None:
    assert sorted(local) == sorted(remote)
    for key in local:
        assert {m: remote[key][m] for m in METRICS} == {m: local[key][m] for m in METRICS}, key
        untimed = [{k: v for k, v in run[key]["history"].items() if k != "seconds"} for run in (remote, local)]
        assert untimed[0] == untimed[1], key
        assert remote[key]["weights"]["sha256"] == local[key]["weights"]["sha256"], key
        assert remote[key]["node"] == NODE and "node" not in local[key]


@needs_ray
@pytest.mark.slow
def test_runs_train_on_the_cluster_as_they_do_locally(trained, local):
    results, _, err = trained
    _same_runs(_runs(local(), T.TINY.name), _runs(results, T.TINY.name))
    *lines, again = [line for line in err.splitlines() if line.startswith(f"[{T.TINY.name}]")]
    assert again == f"[{T.TINY.name}] all 2 run(s) stored and current, nothing to train (retrain them with --fresh)"
    assert len(lines) == 2 and all(line.endswith(f"s on cpu) from node {NODE}") for line in lines), err[-3000:]
    assert sorted(line.split(":")[0].split()[-1] for line in lines) == ["seed=0", "seed=1"]
    # the driver wrote the store; no worker wrote a checkpoint or anything else into it
    stored = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert [p for p in stored if "/weights/" not in p] == sorted(
        f"{name}/{file}" for name in (T.TINY.name, "test-tiny-factory", "test-tiny-diverges", "test-tiny-regression")
        for file in (".lock", "result.json"))


@needs_ray
@pytest.mark.slow
def test_a_model_of_the_courses_own_module_trains_on_the_cluster(trained):
    """The node imports the factory by its path and builds the model there."""
    results, _, err = trained
    (run,) = _runs(results, "test-tiny-factory").values()
    assert run["node"] == NODE and run["model_source"]["file"] == "course_models.py"
    assert run["parameters"] == 4 * 9 + 4 + 4 * 4 * 9 + 4 + 4 * 14 * 14 * 10 + 10  # the factory's network
    (line,) = [line for line in err.splitlines() if line.startswith("[test-tiny-factory]")]
    assert line.startswith("[test-tiny-factory] 1/1 resnet seed=0: val_acc=") and line.endswith(f"from node {NODE}")


@needs_ray
@pytest.mark.slow
def test_a_regression_trains_on_the_cluster_and_stores_its_tasks_metrics(trained):
    results, _, err = trained
    (run,) = _runs(results, "test-tiny-regression").values()
    assert run["node"] == NODE and "val_acc" not in run and "test_acc" not in run
    assert run["val_rmse"] > 0 and run["test_rmse"] > 0
    assert 0.5 < run["val_r2"] < 1 and 0.5 < run["test_r2"] < 1  # it learned the line: better than the mean
    assert run["val_loss"] == pytest.approx(run["val_rmse"] ** 2, rel=1e-6)  # the loss is the squared error
    (line,) = [line for line in err.splitlines() if line.startswith("[test-tiny-regression]")]
    assert line.startswith("[test-tiny-regression] 1/1 linear seed=0: val_rmse=") and line.endswith(f"from node {NODE}")


@needs_ray
@pytest.mark.slow
def test_a_run_that_fails_on_a_node_is_reported_with_it_and_the_others_are_stored(trained):
    results, code, err = trained
    assert code == 1, err[-3000:]
    (failed,) = [line for line in err.splitlines() if "FAILED" in line]
    assert failed.startswith("[test-tiny-diverges] ") and "blows-up seed=0: FAILED on node " in failed
    assert f"FAILED on node {NODE}, not stored: training diverged: non-finite training loss" in failed
    *_, error, again = err.strip().splitlines()  # then the tiny one again, with nothing to train
    assert error.startswith("nnlab: error: training diverged: non-finite training loss")
    assert again.endswith("nothing to train (retrain them with --fresh)")
    assert list(_runs(results, "test-tiny-diverges")) == ["main/seed=0"]


def _held(cluster, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    """`train HELD ARGS --cluster ADDRESS`, every run held at a gate in its second epoch:
    ``(driver, results folder, gate folder)``."""
    gate, results = tmp_path / "gate", tmp_path / "results"
    gate.mkdir()
    proc = _train(cluster, results, "--gate", str(gate), "--gate-step", str(T.STEPS_PER_EPOCH + 3), T.HELD.name,
                  *args, "--cluster", cluster.address, "--device", "cpu")
    return proc, results, gate


def _arrivals(cluster, proc: subprocess.Popen, gate: Path, count: int) -> list[int]:
    """The pids of the (Ray worker) processes once ``count`` runs have reached the gate."""
    return T.await_arrivals(gate, "running", count, proc, meanwhile=lambda: _snapshot(cluster, proc.pid), every=0.2)


@needs_ray
@pytest.mark.slow
def test_a_worker_killed_mid_run_is_retried_and_the_run_stored_once(cluster, local, tmp_path):
    remote, results, gate = _held(cluster, tmp_path, "--seeds", "0")
    worker = psutil.Process(*_arrivals(cluster, remote, gate, 1))
    assert " ".join(worker.cmdline()).startswith("ray::_task")  # the task's worker, held mid-run
    os.kill(worker.pid, signal.SIGKILL)
    retry = [pid for pid in _arrivals(cluster, remote, gate, 2) if pid != worker.pid]
    assert len(retry) == 1  # the run was tried again, in another worker, and reached the gate there
    T.open_gate(gate, "running")
    code, err = _finish(remote)
    assert code == 0, err[-3000:]
    stored = _runs(results, T.HELD.name)
    assert list(stored) == ["main/seed=0"]
    assert len(list((results / T.HELD.name / "weights").iterdir())) == 1
    _same_runs(_runs(local(), T.HELD.name), stored)
    (line,) = [line for line in err.splitlines() if line.startswith(f"[{T.HELD.name}]")]
    assert line.startswith(f"[{T.HELD.name}] 1/1 main seed=0: val_acc=") and line.endswith(f"from node {NODE}")
    assert "Traceback" not in err


@needs_ray
@pytest.mark.slow
def test_sigterm_cancels_the_tasks_and_stores_nothing_more(cluster, tmp_path):
    proc, results, gate = _held(cluster, tmp_path)
    tasks = [psutil.Process(pid) for pid in _arrivals(cluster, proc, gate, 2)]  # two CPUs: two runs at once, both held mid-run
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc, timeout=120)  # it does not wait for the held runs
    assert code == 130, err[-3000:]
    assert (f"[{T.HELD.name}] stopped: 0 of 6 run(s) finished and stored; the runs still on the cluster "
            "were cancelled") in err
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(tasks, timeout=60)  # cancelled with force: their workers are killed
    assert not [p for p in alive if " ".join(p.cmdline()).startswith("ray::_task")]
    T.open_gate(gate, "running")  # the driver, the only writer, has ended
    assert not (results / T.HELD.name / "result.json").exists()


def _scratch(pids) -> list[Path]:
    """The scratch folders of these (Ray worker) processes on this node."""
    import tempfile

    return [p for pid in pids for p in Path(tempfile.gettempdir()).glob(f"nnlab-node-{pid}-*")]


@needs_ray
@pytest.mark.slow
def test_cancelled_tasks_remove_their_node_folders(cluster, tmp_path):
    proc, results, gate = _held(cluster, tmp_path)
    pids = _arrivals(cluster, proc, gate, 2)
    assert len(_scratch(pids)) == 2  # each held run has its checkpoint folder on the node
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc, timeout=120)
    assert code == 130 and "the runs still on the cluster were cancelled" in err, err[-3000:]
    assert not _scratch(pids), "a cancelled task left its nnlab-node-* folder"
    T.open_gate(gate, "running")


@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize("token", [None, "0" * 64])
def test_a_driver_without_the_clusters_token_is_told_to_pass_it(cluster, tmp_path, token):
    env = {k: v for k, v in {**os.environ, **cluster.env}.items() if not k.startswith("RAY_AUTH_")}
    env.update({"NNLAB_RESULTS": str(tmp_path / "results"), "HOME": str(tmp_path)},  # no ~/.ray/auth_token
               **({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {}))
    proc = subprocess.run([sys.executable, SCRIPT, "train", T.TINY.name, "--cluster", cluster.address, "--device",
                           "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()  # Ray never retried: none of its "Failed to get cluster ID" lines
    words = "refused this driver's authentication token" if token else "requires token authentication"
    assert line.startswith("nnlab: error: ") and words in line and "RAY_AUTH_TOKEN=<the cluster's token>" in line
    assert "ray get-auth-token" in line and not (tmp_path / "results" / T.TINY.name).exists()


@needs_ray
@pytest.mark.slow
def test_every_listening_socket_of_the_cluster_is_on_the_loopback_interface(cluster):
    _snapshot(cluster)
    sockets = [(pid, *s) for pid, found in LISTENING.items() for s in found]
    assert any(port == cluster.port for *_, port in sockets), "the head's own port was not seen"
    outside = []
    for pid, name, ip, port in sockets:
        address = ipaddress.ip_address(ip.split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_loopback:
            outside.append((pid, name, ip, port))
    assert not outside, f"listening outside the loopback interface: {outside}"


GRADE_PROBLEM = """\
name = "C"
data = "mnist"
threshold = 0.6
train_size = 1000
test_size = 500

[rules]
allowed = ["Flatten", "Linear", "ReLU"]
max_hidden_units = 100

[budget]
mode = "fixed"
epochs = 1
batch_size = 32
lr = 0.005
"""


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="grading needs bubblewrap")
def test_grade_on_the_cluster_gives_the_local_reports(cluster, tmp_path):
    """`nnlab grade --cluster`: each submission is a task that receives its files by value and
    grades them in a sandbox on the node; the reports are those a local grading writes."""
    (tmp_path / "problem.toml").write_text(GRADE_PROBLEM)
    cls = tmp_path / "class"
    cls.mkdir()
    mlp = "nn.Sequential(nn.Flatten(), nn.Linear(784, {}), nn.ReLU(), nn.Linear({}, 10))"
    (cls / "good.py").write_text("from torch import nn\n\ndef build():\n    return " + mlp.format(32, 32) + "\n")
    (cls / "wide.py").write_text("from torch import nn\n\ndef build():\n    return " + mlp.format(300, 300) + "\n")
    reports = {}
    for where, extra in (("cluster", ["--cluster", cluster.address]), ("local", [])):
        out = tmp_path / where
        proc = subprocess.run([sys.executable, "-m", "nnlab", "grade", str(tmp_path / "problem.toml"), str(cls),
                               "--out", str(out), *extra], capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(cluster.env if where == "cluster" else {})})
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports[where] = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}
    assert reports["cluster"]["good"]["passed"] and not reports["cluster"]["wide"]["passed"]
    assert "graded_on" in reports["cluster"]["good"]
    for name in ("good", "wide"):
        same = ("requirements", "accuracy", "parameters", "hidden_units", "layers")
        assert {k: reports["cluster"][name][k] for k in same} == {k: reports["local"][name][k] for k in same}


@needs_ray
@pytest.mark.slow
def test_stopping_the_cluster_leaves_none_of_its_processes(cluster):
    _snapshot(cluster)
    started = list(cluster.seen.values())
    assert len(started) >= 5  # the head process, GCS, raylet, its agents, workers
    cluster.stop()
    _, alive = psutil.wait_procs(started, timeout=30)
    left = []
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:  # a zombie has ended; only its parent has not looked yet
                left.append((p.pid, p.name()))
    assert not left, f"still running after the cluster stopped: {left}"


def _no_ray(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The tiny experiments' `train ...` in a Python where `import ray` fails, as without Ray."""
    code = ("import sys; sys.modules['ray'] = None; sys.path.insert(0, %r); import tiny_experiments as T; "
            "sys.exit(T.main(sys.argv[1:]))") % TESTS
    return subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_without_ray_cluster_is_one_line_naming_the_extra(tmp_path):
    env = {"NNLAB_RESULTS": str(tmp_path)}
    for argv, extra in (((T.TINY.name, "--cluster", "127.0.0.1:6379"), {}),
                        ((T.TINY.name,), {"NNLAB_CLUSTER": "auto"})):
        proc = _no_ray("train", *argv, "--device", "cpu", env={**env, **extra})
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[0] == ('nnlab: error: training on a cluster needs Ray, which is not '
                                               'installed: pip install "nnlab-course[cluster]"')
        assert not (tmp_path / T.TINY.name).exists()


@pytest.mark.slow
def test_local_training_never_imports_ray(tmp_path):
    proc = subprocess.run([sys.executable, "-c", (
        "import sys; sys.path.insert(0, %r); import tiny_experiments as T; rc = T.main(sys.argv[1:]); "
        "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)") % TESTS,
        "train", T.TINY.name, "--jobs", "2", "--device", "cpu"],
        env={**os.environ, "NNLAB_RESULTS": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_runs(tmp_path, T.TINY.name)) == 2


@pytest.mark.parametrize("resources, device, expected", [
    ({"CPU": 8.0, "GPU": 2.0}, "auto", ("cuda", 1)), ({"CPU": 8.0, "GPU": 2.0}, "cuda:1", ("cuda", 1)),
    ({"CPU": 8.0}, "auto", ("cpu", 0)), ({"CPU": 8.0, "GPU": 2.0}, "cpu", ("cpu", 0))])
def test_each_task_asks_for_the_recipes_threads_and_a_gpu_on_cuda(resources, device, expected, monkeypatch,
                                                                   results_dir, register_experiment):
    """What the runner hands the executor, with Ray itself replaced: no cluster, no training."""
    from dataclasses import replace

    from nnlab import cluster
    from nnlab.runner import run_experiment
    from nnlab.train import DivergedError

    exp = register_experiment(replace(T.TINY, train=replace(T.TINY.train, threads=3)))
    asked, lines = [], []

    class Ray:
        def cluster_resources(self):
            return resources

    def run(address, fn, shared, calls):
        assert shared is exp and address == "head:6379"
        for key, args, cpus, gpus in calls:
            asked.append((args, cpus, gpus))
            yield key, "node-a (10.0.0.7)", None, DivergedError("blew up")

    monkeypatch.setattr(cluster, "require_ray", lambda: None)
    monkeypatch.setattr(cluster, "connect", lambda address: Ray())
    monkeypatch.setattr(cluster, "run", run)
    with pytest.raises(DivergedError, match="2 of 2 runs"):
        run_experiment(exp, cluster="head:6379", device=device, log=lines.append)
    dev, gpus = expected
    assert asked == [(("main", 0, dev), 3, gpus), (("main", 1, dev), 3, gpus)]
    assert lines == [f"[{exp.name}] {i}/2 main seed={i - 1}: FAILED on node node-a (10.0.0.7), not stored: blew up"
                     for i in (1, 2)]
    assert not (results_dir / exp.name).exists()


def test_cuda_on_a_cluster_without_a_gpu_is_refused_before_anything_trains(monkeypatch, tiny_experiment):
    from nnlab import cluster
    from nnlab.runner import run_experiment

    class Ray:
        def cluster_resources(self):
            return {"CPU": 8.0}

    monkeypatch.setattr(cluster, "require_ray", lambda: None)
    monkeypatch.setattr(cluster, "connect", lambda address: Ray())
    monkeypatch.setattr(cluster, "run", lambda *a: pytest.fail("nothing may be submitted"))
    with pytest.raises(cluster.ClusterError, match="no node of the cluster has a GPU"):
        run_experiment(tiny_experiment, cluster="head:6379", device="cuda")


def test_scratch_folders_of_dead_workers_are_removed_and_no_others(tmp_path):
    from nnlab.cluster import remove_dead_scratch

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, alive, other = (tmp_path / f"nnlab-node-{gone.pid}-abc", tmp_path / f"nnlab-node-{os.getpid()}-def",
                          tmp_path / "nnlab-node-notapid")
    for folder in (dead, alive, other):
        (folder / "ckpt").mkdir(parents=True)
    assert remove_dead_scratch(str(tmp_path)) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


@needs_ray
@pytest.mark.slow
def test_a_head_that_dies_mid_run_is_one_nnlab_line(tmp_path):
    from nnlab.cluster import LocalCluster

    with LocalCluster(num_cpus=2, extra_env={"NNLAB_DATA": os.environ["NNLAB_DATA"]}) as head:
        head.seen = {}
        proc, results, gate = _held(head, tmp_path)
        _arrivals(head, proc, gate, 2)
        gcs = [p for p in psutil.Process(head.process.pid).children(recursive=True) if p.name() == "gcs_server"]
        assert len(gcs) == 1
        gcs[0].kill()
        code, err = _finish(proc, timeout=240)
        T.open_gate(gate, "running")
    assert code == 1, err[-3000:]
    assert f"nnlab: error: the Ray head at {head.address} stopped answering while 6 run(s)" in err
    assert "run the same command again" in err and "Traceback" not in err
    lines = err.splitlines()
    said = next(i for i, line in enumerate(lines) if line.startswith("nnlab: error: the Ray head"))
    # nnlab spoke before Ray's client gave up on the head (after 60 s), if it got that far at all
    assert not [line for line in lines[:said] if "Failed to connect to GCS" in line]
    assert not (results / T.HELD.name / "result.json").exists()
