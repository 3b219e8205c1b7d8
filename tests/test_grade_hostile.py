"""`nnlab grade` against hostile submissions: none passes by an attack, none harms another.

Each submission tries one attack and, if it works, says so by failing with ``ESCAPED`` (or
leaves evidence on the host that the test looks for); if the attack fails it returns an
honest model, so its report shows what the grader made of it. Every attack is bounded: at
most 200 processes, a few hundred MB, seconds. The whole zoo is graded in one class, two at
a time, with honest submissions among them that must pass with their usual accuracy.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import psutil
import pytest

from nnlab import cli
from nnlab import grade as G
from nnlab.data import data_root
from nnlab.grade import sandbox

pytestmark = pytest.mark.skipif(bool(sandbox.probe().missing), reason="needs bubblewrap and a cgroup (as in CI)")

PROBLEM = """\
name = "H"
data = "mnist"
threshold = 0.6
seeds = [0]
train_size = 1000
test_size = 500

[rules]
name = "H: at most 100 hidden units, fewer than 60,000 numbers"
allowed = ["Flatten", "Linear", "ReLU"]
max_hidden_units = 100
max_parameters = 60000

[budget]
mode = "fixed"
epochs = 2
batch_size = 32
lr = 0.005

[limits]
cpu_seconds = 20
memory_mib = 512
wall_seconds = 60
max_processes = 64
tmp_mib = 64
"""

HONEST = "nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))"


def _attack(body: str) -> str:
    """A submission that runs ``body`` (which sets ``escaped`` to a string if it got through)
    and then returns an honest model, or fails with ESCAPED."""
    return "import os, sys, torch\nfrom torch import nn\n\n\ndef build():\n    escaped = ''\n" \
        + textwrap.indent(textwrap.dedent(body).strip(), "    ") \
        + f"\n    if escaped:\n        raise SystemExit('ESCAPED: ' + escaped)\n    return {HONEST}\n"


def _zoo(labels: Path, sentinel: Path) -> dict[str, str]:
    digits = Path(__import__("sklearn").__file__).parent / "datasets" / "data" / "digits.csv.gz"
    source = Path(G.__file__).resolve()
    return {
        "honest": _attack("pass"),
        "read_test_labels": _attack(f"""
            try:
                escaped = 'read %d bytes of the test labels' % len(open({str(labels)!r}, 'rb').read())
            except OSError:
                pass"""),
        "read_bundled_dataset": _attack(f"""
            try:
                data = open({str(digits)!r}, 'rb').read()
                escaped = 'read scikit-learn digits (%d bytes)' % len(data) if data else ''
            except OSError:
                pass"""),
        "read_host_files": _attack(f"""
            for path in ('/etc/passwd', '/etc/shadow', {str(Path.home() / ".bashrc")!r},
                         {str(Path.cwd() / "results")!r}, '/proc/1/root/etc/passwd', '/sys/class/net'):
                try:
                    found = os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(1)
                    escaped = escaped or ('got into ' + path if found else '')
                except OSError:
                    pass"""),
        "write_outside": _attack(f"""
            for path in ({str(sentinel)!r}, {str(source)!r}, '/submission/model.py', sys.prefix + '/evil.pth'):
                try:
                    with open(path, 'a') as f:
                        f.write('# written by a submission')
                    if not path.startswith('/tmp'):
                        escaped = 'wrote ' + path
                except OSError:
                    pass"""),
        "network": _attack("""
            socket = __import__('soc' + 'ket')
            for address in (('1.1.1.1', 80), ('127.0.0.1', 22)):
                try:
                    socket.create_connection(address, timeout=2)
                    escaped = 'connected to %s' % (address,)
                except OSError:
                    pass
            for path in ('/run/systemd/private', '/var/run/docker.sock', '/tmp/.X11-unix/X0'):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(path)
                    escaped = 'connected to ' + path
                except OSError:
                    pass"""),
        "become_root": _attack("""
            for attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot('/')):
                try:
                    attempt()
                    escaped = 'became root'
                except (OSError, PermissionError):
                    pass"""),
        "find_classmates": _attack("""
            import glob
            found = [p for p in glob.glob('/tmp/*') + glob.glob('/proc/*/cwd') if 'nnlab' in p]
            others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) > 20]
            if found:
                escaped = 'found ' + ', '.join(found[:3])"""),
        "kill_everyone": _attack("""
            import signal
            for pid in (os.getppid(), 1, -1):
                try:
                    os.kill(pid, signal.SIGKILL) if pid != -1 else None
                except OSError:
                    pass"""),
        "fork_bomb": _attack("""
            import signal
            children = []
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    signal.pause()
                    os._exit(0)
                children.append(pid)
            if len(children) >= 100:
                escaped = 'forked %d processes' % len(children)
            for pid in children:
                os.kill(pid, 9)"""),
        "leave_a_process": _attack("""
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    import signal
                    signal.pause()  # found by the test if it outlives its sandbox
                    os._exit(0)
                os._exit(0)"""),
        "fill_shared_memory": _attack("""
            written = 0
            for folder in ('/dev/shm', '/tmp'):
                try:
                    with open(folder + '/fill', 'wb') as f:
                        for _ in range(40):
                            f.write(b'x' * (10 << 20))
                            written += 10 << 20
                except OSError:
                    pass
            for folder in ('/dev/shm', '/tmp'):
                if os.path.exists(folder + '/fill'):
                    os.remove(folder + '/fill')
            if written > 300 << 20:
                escaped = 'wrote %d MB to tmpfs' % (written >> 20)"""),
        "patch_the_checker": _attack("""
            import nnlab.rules, nnlab.grade.graph
            nnlab.rules.violations = lambda *a, **k: []
            nnlab.rules.hidden_units = lambda *a, **k: 64
            nnlab.grade.graph.violations = lambda *a, **k: []
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 10))"""),
        "smaller_when_traced": _attack("""
            class TwoFaced(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.big = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Sigmoid(), nn.Linear(64, 10))
                    self.small = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))
                def forward(self, x):
                    if torch.compiler.is_exporting() or torch.compiler.is_compiling():
                        return self.small(x)
                    return self.big(x)
            return TwoFaced()"""),
        "weights_in_buffers": _attack("""
            import torch.nn.functional as F
            class Hidden(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.register_buffer('w1', torch.randn(200, 784) * 0.03)
                    self.register_buffer('w2', torch.randn(10, 200) * 0.03)
                    self.out = nn.Linear(10, 10)
                def parameters(self, recurse=True):
                    return iter([])
                def forward(self, x):
                    return self.out(F.linear(torch.relu(F.linear(x.flatten(1), self.w1)), self.w2))
            return Hidden()"""),
        "forged_answer": _attack("""
            import json
            answer = json.dumps({'format': 'nnlab-graph/1', 'graphs': {'train': [], 'eval': []},
                                 'tensors': {'w': {'kind': 'parameter', 'shape': ['many'], 'dtype': 'float32'}}})
            pipes = [fd for fd in range(3, 64) if os.path.exists('/proc/self/fd/%d' % fd)
                     and os.readlink('/proc/self/fd/%d' % fd).startswith('pipe:')]
            os.write(pipes[0], answer.encode())
            os._exit(0)"""),
        "huge_graph": _attack("""
            import json
            nodes = [{'name': 'x', 'op': 'input'},
                     {'name': 'v', 'op': 'call', 'target': 'aten.expand.default',
                      'args': [{'node': 'x'}, [3, 1 << 20, 28, 28]], 'kwargs': {}},
                     {'name': 'o', 'op': 'output', 'args': [[{'node': 'v'}]]}]
            answer = json.dumps({'format': 'nnlab-graph/1', 'tensors': {}, 'graphs': {'train': nodes, 'eval': nodes}})
            pipes = [fd for fd in range(3, 64) if os.path.exists('/proc/self/fd/%d' % fd)
                     and os.readlink('/proc/self/fd/%d' % fd).startswith('pipe:')]
            os.write(pipes[0], answer.encode())
            os._exit(0)"""),
        "flood_the_pipe": _attack("""
            chunk = b'[' * (1 << 20)
            for fd in range(3, 12):
                try:
                    for _ in range(80):
                        os.write(fd, chunk)
                except OSError:
                    pass
            os._exit(0)"""),
        "forbidden_operation": _attack("""
            class Reads(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
                def forward(self, x):
                    return torch.erf(self.net(x))
            return Reads()"""),
        "honest_again": _attack("pass"),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cls = root / "class"
    cls.mkdir()
    labels = next((data_root() / "MNIST").rglob("t10k-labels*")).resolve()
    sentinel = root / "sentinel"
    for name, source in _zoo(labels, sentinel).items():
        (cls / f"{name}.py").write_text(source)
    (root / "problem.toml").write_text(PROBLEM)
    out = root / "out"
    before = {p.pid for p in psutil.process_iter()}
    rc = cli.main(["grade", str(root / "problem.toml"), str(cls), "--out", str(out), "--jobs", "2"])
    reports = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}
    return {"rc": rc, "reports": reports, "sentinel": sentinel, "before": before, "out": out,
            "labels": labels, "root": root}


def _text(report: dict) -> str:
    return json.dumps(report["requirements"])


def _reason(report: dict, key: str) -> str:
    return next(r["reason"] for r in report["requirements"] if r["requirement"] == key)


def test_every_submission_gets_a_report_and_no_attack_got_through(hostile):
    assert hostile["rc"] == 0
    assert len(hostile["reports"]) == len(_zoo(Path("x"), Path("y")))
    for name, report in hostile["reports"].items():
        assert "ESCAPED" not in _text(report), (name, G.first_failure(report))


def test_honest_submissions_pass_beside_the_attacks(hostile):
    """The attacks harmed no classmate: both honest copies pass with the same accuracy."""
    honest, again = hostile["reports"]["honest"], hostile["reports"]["honest_again"]
    assert honest["passed"] and again["passed"]
    assert honest["accuracy"] == again["accuracy"] and honest["accuracy"]["mean"] >= 0.6


@pytest.mark.parametrize("name", ["read_test_labels", "read_bundled_dataset", "read_host_files", "write_outside",
                                  "network", "become_root", "find_classmates", "fork_bomb", "fill_shared_memory",
                                  "leave_a_process"])
def test_an_attack_that_fails_leaves_an_honest_model_graded_honestly(hostile, name):
    report = hostile["reports"][name]
    assert report["passed"], (name, G.first_failure(report))
    assert report["accuracy"] == hostile["reports"]["honest"]["accuracy"]


def test_nothing_was_written_outside_and_nothing_outlived_its_sandbox(hostile):
    assert not hostile["sentinel"].exists()
    assert Path(G.__file__).read_text().startswith('"""Grading')
    leftovers = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] not in hostile["before"]
                 and "nnlab.grade._sandboxed" in " ".join(p.info["cmdline"] or [])]
    assert not leftovers
    assert not list(Path("/sys/fs/cgroup/pids").glob("nnlab-grade-*")) if Path("/sys/fs/cgroup/pids").is_dir() else True


@pytest.mark.parametrize("name, key, words", [
    ("patch_the_checker", "rules", "1000 hidden units, more than the 100 allowed"),
    ("weights_in_buffers", "rules", "158,800 in buffers and constants), not fewer than 60,000"),
    ("forged_answer", "exports", "not an integer"),
    ("forbidden_operation", "exports", "runs aten.erf.default, an operation the grader does not run"),
    ("huge_graph", "exports", "makes a tensor of 2,466,250,752 elements at batch size 3"),
])
def test_tricks_on_the_rules_or_the_answer_fail_with_a_clear_reason(hostile, name, key, words):
    report = hostile["reports"][name]
    assert not report["passed"]
    assert G.failures(report)[0]["requirement"] == key, G.first_failure(report)
    assert words in _reason(report, key)


def test_a_flooded_answer_fails_only_its_sender(hostile):
    report = hostile["reports"]["flood_the_pipe"]
    assert G.failures(report)[0]["requirement"] == "runs within its limits"
    assert "returned more than" in _reason(report, "runs within its limits") \
        or "no readable answer" in _reason(report, "runs within its limits")


def test_what_is_graded_is_what_was_exported(hostile):
    """A model that is smaller when traced is graded as the small model: its certified size
    and its accuracy both come from the graph the grader trained."""
    report = hostile["reports"]["smaller_when_traced"]
    small, big = 784 * 8 + 8 + 8 * 10 + 10, 784 * 64 + 64 + 64 * 10 + 10
    assert report["passed"] and report["hidden_units"] == 8 and "Sigmoid" not in report["layers"]
    assert report["parameters"] == small + big  # every tensor the model holds counts, used or not
    assert 0.6 <= report["accuracy"]["mean"] < 1


def test_weights_embedded_in_model_py_do_not_survive_a_fixed_budget(tmp_path):
    """Under a fixed budget the grader initialises the model itself: a submission that sets
    its weights in build() is graded exactly like one that does not."""
    (tmp_path / "problem.toml").write_text(PROBLEM)
    problem = G.load_problem(tmp_path / "problem.toml")
    (tmp_path / "plain.py").write_text(_attack("pass"))
    (tmp_path / "preset.py").write_text(_attack("pass").replace(
        f"    return {HONEST}", f"    model = {HONEST}\n    for p in model.parameters():\n"
                                 "        torch.nn.init.constant_(p, 0.0123)\n    return model"))
    plain, preset = G.grade(problem, [tmp_path / "plain.py", tmp_path / "preset.py"])
    keep = ("accuracy", "train_loss", "parameters", "hidden_units")
    assert {k: plain[k] for k in keep} == {k: preset[k] for k in keep}
