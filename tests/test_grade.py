"""`nnlab grade`: problems as data, submissions in sandboxes, reports, and the book's problems.

One class of synthetic submissions (every failure the grader must survive, and legal ones
that pass and fail the threshold) is graded once through the command line on a slice of
MNIST; the tests then read its reports. The hostile submissions are in test_grade_hostile.py.
"""

from __future__ import annotations

import csv
import json
import textwrap

import pytest

from nnlab import cli
from nnlab import grade as G
from nnlab.grade import sandbox
from nnlab.rules import Rules

pytestmark = pytest.mark.skipif(not sandbox.probe().tool, reason="bubblewrap is not installed here")

PROBLEM = """\
name = "T1"
title = "a tiny MLP problem on a slice of MNIST"
data = "mnist"
threshold = 0.6
seeds = [0]
train_size = 1000
test_size = 500

[rules]
name = "T1: at most 100 hidden units"
allowed = ["Flatten", "Linear", "ReLU", "Dropout"]
max_hidden_units = 100

[budget]
mode = "submitted"
epochs = 2
batch_size = 32
lr = 0.005
max_epochs = 3
min_batch_size = 16

[limits]
cpu_seconds = 15
memory_mib = 768
wall_seconds = 90
"""

MLP = "nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))"

SUBMISSIONS = {
    "good": f"from torch import nn\n\ndef build():\n    return {MLP}\n",
    "weak": textwrap.dedent(f"""
        from torch import nn

        class Blind(nn.Module):  # legal, but it never looks at the image
            def __init__(self):
                super().__init__()
                self.net = {MLP}

            def forward(self, x):
                return self.net(x * 0)

        def build():
            return Blind()
        """),
    "syntax": "from torch import nn\n\ndef build(:\n    return None\n",
    "forbidden": "import subprocess\nfrom torch import nn\n\ndef build():\n    return " + MLP + "\n",
    "missing": "import not_a_real_module\n\ndef build():\n    return None\n",
    "loop": "def build():\n    while True:\n        pass\n",
    "memory": "def build():\n    hoard = []\n    while True:\n        hoard.append(bytearray(50_000_000))\n",
    "shape": "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), "
             "nn.ReLU(), nn.Linear(32, 7))\n",
    "nonfinite": textwrap.dedent(f"""
        from torch import nn

        class Inf(nn.Module):  # finite while it trains, infinite when evaluated
            def __init__(self):
                super().__init__()
                self.net = {MLP}

            def forward(self, x):
                out = self.net(x)
                return out if self.training else out * float("inf")

        def build():
            return Inf()
        """),
    "illegal": "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), "
               "nn.Sigmoid(), nn.Linear(32, 10))\n",
    "sneaky_order": textwrap.dedent("""
        from torch import nn

        class Sneaky(nn.Module):  # the output layer first, so a reader might count 10 hidden units
            def __init__(self):
                super().__init__()
                self.out = nn.Linear(200, 10)
                self.hidden = nn.Linear(784, 200)
                self.act = nn.ReLU()

            def forward(self, x):
                return self.out(self.act(self.hidden(x.flatten(1))))

        def build():
            return Sneaky()
        """),
    "sneaky_function": textwrap.dedent("""
        import torch
        from torch import nn

        class Smooth(nn.Module):  # ReLU modules only, but a sigmoid in forward
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(784, 32), nn.Linear(32, 10)

            def forward(self, x):
                return self.b(torch.sigmoid(self.a(x.flatten(1))))

        def build():
            return Smooth()
        """),
    "diverges": f"from torch import nn\n\ndef build():\n    return {MLP}\n\n"
                "def recipe():\n    return {'optimizer': 'sgd', 'lr': 1e6, 'momentum': 0.0}\n",
    "too_long": f"from torch import nn\n\ndef build():\n    return {MLP}\n\n"
                "def recipe():\n    return {'epochs': 50}\n",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class graded once through `nnlab grade`, with its reports."""
    root = tmp_path_factory.mktemp("grade")
    cls = root / "class"
    cls.mkdir()
    for name, source in SUBMISSIONS.items():
        if name == "good":  # one submission as a folder, the rest as single files
            (cls / name).mkdir()
            (cls / name / "model.py").write_text(source)
        else:
            (cls / f"{name}.py").write_text(source)
    (cls / "good_again.py").write_text(SUBMISSIONS["good"])
    (root / "problem.toml").write_text(PROBLEM)
    out = root / "out"
    rc = cli.main(["grade", str(root / "problem.toml"), str(cls), "--out", str(out), "--jobs", "2"])
    reports = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}
    return {"rc": rc, "out": out, "reports": reports, "root": root, "class": cls}


def _req(report: dict, key: str) -> dict:
    return next(r for r in report["requirements"] if r["requirement"] == key)


def _failed(report: dict) -> list[str]:
    """The requirements failed, not counting those left unchecked by an earlier failure."""
    return [r["requirement"] for r in G.failures(report)]


def test_grading_completes_with_a_report_for_every_submission(graded, capsys):
    assert graded["rc"] == 0
    assert set(graded["reports"]) == set(SUBMISSIONS) | {"good_again"}
    for name in graded["reports"]:
        assert (graded["out"] / name / "report.md").read_text().startswith(f"# {name}: problem T1")


def test_legal_submissions_pass_or_fail_on_accuracy_alone(graded):
    good, weak = graded["reports"]["good"], graded["reports"]["weak"]
    assert good["passed"] and good["score"] == 1.0
    assert good["accuracy"]["mean"] >= 0.6 and good["accuracy"]["test_images"] == 500
    assert good["hidden_units"] == 32 and good["parameters"] == 784 * 32 + 32 + 32 * 10 + 10
    assert good["layers"] == ["Flatten", "Linear", "ReLU"] and good["stored"] == 0
    assert len(good["train_loss"]["0"]) == 2 and good["epochs_trained"] == 2  # the default recipe: 2 epochs
    assert _failed(weak) == ["accuracy"]
    assert "is below the threshold 60.00%" in _req(weak, "accuracy")["reason"]


@pytest.mark.parametrize("name, requirement, words", [
    ("syntax", "loads", "syntax error in model.py, line 3"),
    ("forbidden", "loads", "imports subprocess, which this problem forbids"),
    ("missing", "loads", "model.py imports not_a_real_module, which is not installed where submissions are graded"),
    ("loop", "runs within its limits", "CPU-time limit of 15 s, during build()"),
    ("memory", "runs within its limits", "ran out of its memory limit of 768 MiB"),
    ("shape", "exports", "returns (3, 7), not (3, 10): one row of 10 class scores per image"),
    ("nonfinite", "outputs", "500 of 500 rows of scores are not finite"),
    ("illegal", "rules", "runs Sigmoid, which the rules (T1: at most 100 hidden units) do not allow"),
    ("sneaky_order", "rules", "200 hidden units, more than the 100 allowed"),
    ("sneaky_function", "rules", "runs Sigmoid"),
    ("diverges", "trains", "training with seed 0 diverged"),
    ("too_long", "budget", "50 epochs, more than the 3 allowed"),
])
def test_each_bad_submission_gets_a_clear_line(graded, name, requirement, words):
    report = graded["reports"][name]
    assert not report["passed"]
    assert _failed(report)[0] == requirement, report["requirements"]
    assert words in _req(report, requirement)["reason"]
    assert report["score"] < 1


def test_class_summary_lists_everyone(graded):
    rows = list(csv.DictReader((graded["out"] / "summary.csv").open()))
    assert [r["submission"] for r in rows] == sorted(graded["reports"])
    passed = {r["submission"] for r in rows if r["passed"] == "True"}
    assert passed == {"good", "good_again"}
    md = (graded["out"] / "summary.md").read_text()
    assert "2 of 15 submission(s) passed" in md and "| sneaky_order | no |" in md


def test_grading_is_deterministic(graded):
    """The same submission graded twice (two sandboxes, two trainings) gives the same report,
    timings and date apart."""
    good, again = graded["reports"]["good"], dict(graded["reports"]["good_again"], submission="good")
    assert G.without_timing(again) == G.without_timing(good)
    assert good["timing"]["training_seconds"]["0"] > 0


def test_the_sandbox_sees_no_data_and_the_report_says_what_contained_it(graded):
    good = graded["reports"]["good"]
    iso = good["isolation"]
    assert iso["sandbox"].startswith("bubblewrap") and "network" in iso["sandbox"]
    assert iso["data"].startswith("none") and "computed by the grader" in iso["trust"]
    prov = good["provenance"]
    assert len(prov["submission_sha256"]) == 64 and len(prov["problem_sha256"]) == 64
    assert "t10k-labels" in prov["data fingerprint"] and prov["torch"] and prov["python"]


def test_problem_round_trips_through_toml(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PROBLEM)
    problem = G.load_problem(path)
    assert problem.budget.mode == "submitted" and problem.budget.max_epochs == 3
    assert problem.rules.max_hidden_units == 100 and problem.limits.cpu_seconds == 15
    again = tmp_path / "again.toml"
    again.write_text(problem.to_toml())
    assert G.load_problem(again) == problem


@pytest.mark.parametrize("change, words", [
    (("threshold = 0.6", "threshold = 6"), "threshold must be an accuracy between 0 and 1"),
    (("max_epochs = 3", "max_epoch = 3"), "unknown key 'max_epoch' in"),
    (("max_hidden_units = 100", "max_hiden_units = 100"), "did you mean 'max_hidden_units'?"),
    (('allowed = ["Flatten"', 'allowed = ["Flaten"'), "'Flaten' is not a layer class in torch.nn"),
    (('mode = "submitted"', 'mode = "trained"'), "[budget] mode must be one of fixed, submitted, weights"),
    (("lr = 0.005", "lr = -1"), "lr must be a positive finite number"),
    (("cpu_seconds = 15", "cpu_seconds = 0"), "[limits] cpu_seconds must be a positive integer"),
    (('data = "mnist"', 'data = "mnsit"'), "fix the data field"),
    (("seeds = [0]", "seeds = [0, 0]"), "seeds must be a list of distinct integers"),
    (("[rules]", "[rules"), "is not valid TOML"),
])
def test_bad_problem_files_get_one_line_naming_the_field(tmp_path, change, words):
    path = tmp_path / "bad.toml"
    path.write_text(PROBLEM.replace(*change))
    with pytest.raises(G.ProblemError) as info:
        G.load_problem(path)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(PROBLEM)
    assert cli.main(["grade", str(tmp_path / "nope.toml"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnlab: error: problem file") and "\n" not in err
    assert cli.main(["grade", str(path), str(tmp_path / "nobody")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["grade", str(path), str(empty)]) == 2
    assert "holds no submissions" in capsys.readouterr().err


def test_a_weights_problem_reads_no_pickle(tmp_path):
    import torch

    sub = tmp_path / "pickled"
    sub.mkdir()
    (sub / "model.py").write_text(f"from torch import nn\n\ndef build():\n    return {MLP}\n")
    torch.save({"w": torch.zeros(2)}, sub / "weights.safetensors")  # a pickle in disguise
    problem = G.Problem("W", "mnist", Rules("any", frozenset()), 0.5, budget=G.Budget("weights"), test_size=100)
    report = G.grade(problem, [sub])[0]
    assert _failed(report) == ["budget"]
    assert "weights.safetensors cannot be read" in _req(report, "budget")["reason"]


def test_a_data_source_object_is_refused_by_to_toml_and_modules_are_found_beside_the_problem(tmp_path):
    import torch

    from nnlab.data import ArrayData

    problem = G.Problem("D", ArrayData("tiny", train=(torch.zeros(40, 1, 2, 2), torch.zeros(40).long())),
                        Rules("any", frozenset()), 0.5)
    with pytest.raises(G.ProblemError, match="name it instead"):
        problem.to_toml()
    (tmp_path / "course_data.py").write_text(
        "from nnlab.data import MNIST\nSOURCE = MNIST\n")
    (tmp_path / "p.toml").write_text(PROBLEM.replace('data = "mnist"', 'data = "course_data:SOURCE"'))
    loaded = G.load_problem(tmp_path / "p.toml")
    assert loaded.source().num_classes == 10  # found in the problem file's folder, no PYTHONPATH
    (tmp_path / "q.toml").write_text(PROBLEM.replace('data = "mnist"', 'data = "nowhere_data:SOURCE"'))
    with pytest.raises(G.ProblemError, match="looked in"):
        G.load_problem(tmp_path / "q.toml").source()


# --- the book's problems -----------------------------------------------------------------

def test_book_definitions_agree_with_the_book():
    from nnlab.book import grading
    from nnlab.book import problems as P

    assert sorted(grading.PROBLEMS) == sorted(t.problem for t in P.TARGETS)
    for target in P.TARGETS:
        shipped = G.load_problem(grading.definition(target.problem))
        assert shipped == grading.PROBLEMS[target.problem]
        assert shipped.threshold == target.required
        assert shipped.rules == grading.rules_of(target.problem)
        assert grading.definition(target.problem).read_text() == grading.PROBLEMS[target.problem].to_toml()
        assert G.load_problem(f"nnlab.book.grading:PROBLEMS.{target.problem}") is grading.PROBLEMS[target.problem]


def test_a_sleeping_submission_is_stopped_at_the_wall_clock_limit(tmp_path):
    from dataclasses import replace

    path = tmp_path / "p.toml"
    path.write_text(PROBLEM)
    problem = replace(G.load_problem(path), limits=G.Limits(cpu_seconds=15, memory_mib=768, wall_seconds=6))
    (tmp_path / "sleeper.py").write_text("import time\n\ndef build():\n    time.sleep(600)\n")
    report = G.grade(problem, [tmp_path / "sleeper.py"])[0]
    assert _failed(report) == ["runs within its limits"]
    assert "wall-clock limit of 6 s, during build()" in _req(report, "runs within its limits")["reason"]
    assert report["timing"]["sandbox_seconds"] < 60


def test_the_books_own_models_pass_their_problems(tmp_path):
    """Evaluation only: the MLPs on the whole test set; the CNN, whose 10,000 forward passes
    take minutes on one thread, on its first 1,000 images."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from nnlab.book import grading
    from nnlab.book import problems as P

    def one(target, folder):
        assert sorted(p.name for p in folder.iterdir()) == ["model.py", "weights.safetensors"]
        problem = grading.PROBLEMS[target.problem]
        if problem.rules.max_parameters is not None:  # the CNN
            problem = replace(problem, test_size=1000)
        return G.grade(problem, [folder])[0]

    folders = [grading.export_submission(t.experiment, tmp_path / t.problem) for t in P.TARGETS]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(one, P.TARGETS, folders))
    for target, report in zip(P.TARGETS, reports):
        assert report["passed"], (target.problem, report["requirements"])
        assert report["accuracy"]["mean"] >= target.required
        assert report["accuracy"]["test_images"] == (1000 if target.problem == "3G" else 10_000)
        assert report["isolation"]["data"].startswith("none")


def test_sigterm_stops_grading_within_seconds_and_resume_grades_the_rest(tmp_path):
    """Stopped while one submission's sandbox runs, grading writes what it finished and says
    how to go on; `--resume` then grades only what has no report."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    (tmp_path / "p.toml").write_text(PROBLEM.replace("wall_seconds = 90", "wall_seconds = 600"))
    cls = tmp_path / "class"
    cls.mkdir()
    good = SUBMISSIONS["good"]
    (cls / "a.py").write_text(good)
    (cls / "b.py").write_text("import signal\n\ndef build():\n    signal.pause()  # held until the grader kills it\n")
    (cls / "c.py").write_text(good)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nnlab", "grade", str(tmp_path / "p.toml"), str(cls), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)

    def sandboxes() -> list[psutil.Process]:
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [k for k in kids if "nnlab.grade._sandboxed" in " ".join(k.cmdline())]

    deadline = time.monotonic() + 300  # a failure guard only: the test acts on the events below
    while time.monotonic() < deadline and not ((out / "a" / "report.json").exists() and sandboxes()):
        time.sleep(0.2)
    running = sandboxes()
    assert running, "b's sandbox never started"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15 and proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    assert not [p for p in running if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert (out / "a" / "report.json").exists() and not (out / "b").exists()
    assert "2 submission(s) not graded yet" in (out / "summary.md").read_text()
    first = json.loads((out / "a" / "report.json").read_text())

    (cls / "b.py").write_text(good)
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=os.environ, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "a" / "report.json").read_text())["graded_at"] == first["graded_at"]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["submission"], r["passed"]) for r in rows] == [("a", "True"), ("b", "True"), ("c", "True")]


def test_a_private_test_split_is_graded_instead_of_the_public_one(tmp_path):
    """`private_test` names a source whose test split is graded: here 100 images of noise with
    random labels, so an honest model is at chance, and the report names its fingerprint."""
    (tmp_path / "private_data.py").write_text(textwrap.dedent("""
        import numpy as np
        from nnlab.data import ArrayData

        rng = np.random.default_rng(0)
        PRIVATE = ArrayData("private", train=(rng.random((50, 1, 28, 28)), rng.integers(0, 10, 50)),
                            test=(rng.random((100, 1, 28, 28)), rng.integers(0, 10, 100)), num_classes=10)
        """))
    (tmp_path / "p.toml").write_text(PROBLEM.replace("test_size = 500\n", 'private_test = "private_data:PRIVATE"\n'))
    problem = G.load_problem(tmp_path / "p.toml")
    (tmp_path / "good.py").write_text(SUBMISSIONS["good"])
    report = G.grade(problem, [tmp_path / "good.py"])[0]
    assert report["accuracy"]["test_images"] == 100 and report["accuracy"]["mean"] < 0.35
    assert _failed(report) == ["accuracy"]
    assert "test data fingerprint" in report["provenance"]


WIDE_CONV = ("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(1, 2048, 3, padding=1), "
             "nn.ReLU(), nn.Flatten(), nn.Linear(2048 * 28 * 28, 10))\n")


@pytest.mark.parametrize("limits, words", [
    (G.Limits(cpu_seconds=30, memory_mib=512, wall_seconds=120), "would need about"),
    (G.Limits(cpu_seconds=30, memory_mib=8192, wall_seconds=120, train_seconds=1),
     "took longer than the problem's train_seconds (1 s)"),
])
def test_the_graders_own_training_is_bounded_in_memory_and_time(tmp_path, limits, words):
    """What the grader trains is the student's choice, so its memory is estimated from the
    graph before training, and its time is checked at every forward pass."""
    from dataclasses import replace

    path = tmp_path / "p.toml"
    path.write_text(PROBLEM)
    problem = replace(G.load_problem(path), rules=Rules("any", frozenset()), limits=limits)
    (tmp_path / "wide.py").write_text(WIDE_CONV)
    report = G.grade(problem, [tmp_path / "wide.py"])[0]
    assert _failed(report) == ["trains"], G.first_failure(report)
    assert words in _req(report, "trains")["reason"]
