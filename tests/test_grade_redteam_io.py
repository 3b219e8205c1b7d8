"""`nnlab grade` against the red team's attacks on its inputs and outputs: a graph that writes
into the grader's cached images, a recipe that picks its own data, a forged answer declaring
gigabytes of parameters, an answer of millions of JSON objects, two submissions sharing a
name, and submissions that are symbolic links.

Most attacks are forged answers: the sandbox's reply is replaced by the attacker's document
(what a submission can write on its answer pipe), so they run without bubblewrap.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nnlab import grade as G
from nnlab.grade import _sandboxed as S
from nnlab.grade import grader, sandbox, session

PROBLEM = """\
name = "IO"
data = "mnist"
threshold = 0.6
seeds = [0]
train_size = 1000
test_size = 500

[rules]
allowed = ["Flatten", "Linear", "ReLU"]
max_hidden_units = 100

[budget]
mode = "{mode}"
epochs = 2
batch_size = 32
lr = 0.005
{extra}
[limits]
memory_mib = 512
"""

HONEST = "from torch import nn\n\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), " \
         "nn.ReLU(), nn.Linear(32, 10))\n"


def _problem(tmp_path, mode: str = "fixed", extra: str = ""):
    (tmp_path / "problem.toml").write_text(PROBLEM.format(mode=mode, extra=extra))
    return G.load_problem(tmp_path / "problem.toml")


def _honest_doc(shape) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    return {"format": S.FORMAT, "input_shape": list(shape), **S._export(model, list(shape))}


def _saboteur_doc(shape) -> dict:
    """The honest model whose eval graph first copies its input, then zeroes it in place."""
    doc = _honest_doc(shape)
    g = doc["graphs"]["eval"]
    i = next(i for i, n in enumerate(g) if n["op"] == "input")
    x = g[i]["name"]
    extra = [{"name": "mine", "op": "call", "target": "aten.clone.default", "args": [{"node": x}], "kwargs": {}},
             {"name": "wipe", "op": "call", "target": "aten.add_.Tensor", "args": [{"node": x}, {"node": x}],
              "kwargs": {"alpha": -1}}]
    for n in g[i + 1:]:
        n["args"] = json.loads(json.dumps(n.get("args")).replace(json.dumps({"node": x}), json.dumps({"node": "mine"})))
    doc["graphs"]["eval"] = g[:i + 1] + extra + g[i + 1:]
    return doc


def _bigparams_doc(shape, k: int = 3) -> dict:
    """k parameters of 2**28 float32 numbers (1 GiB each), each read by a linear whose result is unused."""
    side = 1 << 14
    tensors = {"out.weight": {"kind": "parameter", "shape": [10, 784], "dtype": "float32"},
               "out.bias": {"kind": "parameter", "shape": [10], "dtype": "float32"}}
    g = [{"name": "x", "op": "input"},
         {"name": "flat", "op": "call", "target": "aten.view.default", "args": [{"node": "x"}, [-1, 784]], "kwargs": {}},
         {"name": "col", "op": "call", "target": "aten.slice.Tensor", "args": [{"node": "flat"}, 1, 0, 1], "kwargs": {}},
         {"name": "wide", "op": "call", "target": "aten.expand.default", "args": [{"node": "col"}, [-1, side]],
          "kwargs": {}},
         {"name": "ow", "op": "tensor", "target": "out.weight"}, {"name": "ob", "op": "tensor", "target": "out.bias"}]
    for j in range(k):
        tensors[f"big{j}.weight"] = {"kind": "parameter", "shape": [side, side], "dtype": "float32"}
        g += [{"name": f"w{j}", "op": "tensor", "target": f"big{j}.weight"},
              {"name": f"l{j}", "op": "call", "target": "aten.linear.default",
               "args": [{"node": "wide"}, {"node": f"w{j}"}], "kwargs": {}}]
    g += [{"name": "logits", "op": "call", "target": "aten.linear.default",
           "args": [{"node": "flat"}, {"node": "ow"}, {"node": "ob"}], "kwargs": {}},
          {"name": "output", "op": "output", "args": [{"node": "logits"}]}]
    return {"format": S.FORMAT, "input_shape": list(shape), "tensors": tensors, "graphs": {"train": g, "eval": g}}


@pytest.fixture
def forged(monkeypatch):
    """Submissions whose sandbox answers with the bytes given here (file name -> answer)."""
    answers: dict[str, bytes] = {}

    def run(files, task, limits, stop=None):
        return sandbox.SandboxRun(0, 0.01, 0.01, "", answers[files["model.py"].name])

    monkeypatch.setattr(sandbox, "run", run)
    return answers


def _reason(report: dict, key: str) -> str:
    return next(r["reason"] for r in report["requirements"] if r["requirement"] == key)


def _write(tmp_path, name: str) -> object:
    path = tmp_path / name
    path.write_text(HONEST)
    return path


# -- 2: a graph that writes into its input must not reach the cache other submissions read ------

def test_an_in_place_write_to_the_input_fails_its_sender_and_spares_the_class(tmp_path, forged):
    problem = _problem(tmp_path)
    inputs = grader.load_inputs(problem)
    cached = [t.clone() for t in (*inputs.train, *inputs.val, *inputs.test)]
    shape = inputs.input_shape
    forged["before.py"] = forged["after.py"] = json.dumps(_honest_doc(shape)).encode()
    forged["aaa_saboteur.py"] = json.dumps(_saboteur_doc(shape)).encode()
    paths = [_write(tmp_path, n) for n in ("before.py", "aaa_saboteur.py", "after.py")]
    before, saboteur, after = (grader.grade_one(problem, p) for p in paths)
    assert before["passed"] and after["passed"], G.first_failure(after)
    assert after["accuracy"] == before["accuracy"]
    assert not saboteur["passed"]  # refused by the graph check, or caught by the grader's own copy
    now = grader.load_inputs(problem)
    assert all(torch.equal(a, b) for a, b in zip(cached, (*now.train, *now.val, *now.test)))


def test_the_grader_gives_each_submission_its_own_copy_of_the_images(tmp_path, forged, monkeypatch):
    """Whatever operation a graph may use to write into its input, the write stays in that
    submission's copy, and the grader fails it for that."""
    problem = _problem(tmp_path)
    inputs = grader.load_inputs(problem)
    test_images = inputs.test[0].clone()
    forged["plain.py"] = forged["writes.py"] = json.dumps(_honest_doc(inputs.input_shape)).encode()
    forward, writing = G.graph.ExportedNet.forward, []

    def forward_writing(self, x):
        if writing and not self.training:
            x.mul_(0.5)
        return forward(self, x)

    monkeypatch.setattr(G.graph.ExportedNet, "forward", forward_writing)
    plain = grader.grade_one(problem, _write(tmp_path, "plain.py"))
    writing.append(True)
    writes = grader.grade_one(problem, _write(tmp_path, "writes.py"))
    writing.clear()
    again = grader.grade_one(problem, _write(tmp_path, "plain.py"))
    assert torch.equal(grader.load_inputs(problem).test[0], test_images)
    assert plain["passed"] and again["accuracy"] == plain["accuracy"]
    assert not writes["passed"]
    assert _reason(writes, "outputs") == "its graph wrote into the images it was given (an in-place operation on " \
                                         "its input); a model may only read its input"


# -- 4: a submitted recipe may not choose its data ------------------------------------------------

def test_a_submitted_recipe_may_not_train_on_the_validation_split(tmp_path):
    problem = _problem(tmp_path, "submitted", "max_epochs = 2\n")
    recipe, why = grader._submitted_recipe(problem, {"epochs": 2, "fit_on": "train+val"})
    assert recipe is None
    assert "fit_on 'train+val': this problem trains on 'train' only" in why
    recipe, why = grader._submitted_recipe(problem, {"epochs": 2, "fit_on": "train"})
    assert recipe is not None and recipe.fit_on == "train" and why == ""


# -- 5: declared sizes are checked before anything is allocated -----------------------------------

def test_declared_parameters_beyond_the_memory_limit_are_refused_before_allocation(tmp_path, forged, monkeypatch):
    problem = _problem(tmp_path)
    allocated = []
    monkeypatch.setattr(G.graph.ExportedNet, "materialise", lambda self: allocated.append(True))
    forged["big.py"] = json.dumps(_bigparams_doc(grader.load_inputs(problem).input_shape)).encode()
    report = grader.grade_one(problem, _write(tmp_path, "big.py"))
    assert not report["passed"] and not allocated
    assert G.failures(report)[0]["requirement"] == "exports"
    assert "declares tensors of 3,072 MiB in all, more than the problem's memory limit of 512 MiB" \
        in _reason(report, "exports")


def test_declared_size_counts_every_dtype_and_ignores_malformed_entries():
    doc = {"tensors": {"a": {"shape": [1024, 1024], "dtype": "float64"}, "b": {"shape": [1 << 20], "dtype": "int8"},
                       "c": {"shape": ["many"], "dtype": "float32"}, "d": "junk", "e": {"shape": [1] * 9}}}
    assert grader.declared_mib(doc) == 9
    assert grader.declared_mib({"tensors": []}) == 0


# -- 8: the answer is bounded in bytes and in JSON values before it is parsed ---------------------

def test_an_answer_of_millions_of_json_objects_is_refused_unparsed(tmp_path, forged, monkeypatch):
    problem = _problem(tmp_path)
    parsed = []
    monkeypatch.setattr(grader.json, "loads", lambda raw: parsed.append(raw))
    forged["bomb.py"] = b"[" + b"{}," * 1_000_000 + b"{}]"
    report = grader.grade_one(problem, _write(tmp_path, "bomb.py"))
    assert not parsed
    assert "1,000,002 JSON objects and lists, more than the 200,000 the grader reads" \
        in _reason(report, "runs within its limits")


@pytest.mark.skipif(bool(sandbox.probe().missing), reason="needs bubblewrap and a cgroup (as in CI)")
def test_an_oversized_answer_is_cut_off_at_the_cap(tmp_path):
    problem = _problem(tmp_path)
    (tmp_path / "bomb.py").write_text("import os\n\n\ndef build():\n    os.write(3, b'[' + b'0,' * (10 << 20) + b'0]')\n"
                                      "    os._exit(0)\n")
    report = grader.grade_one(problem, tmp_path / "bomb.py")
    assert sandbox.MAX_OUTPUT_BYTES <= 16 << 20
    assert "returned more than 16 MiB" in _reason(report, "runs within its limits")


# -- 6: every submission has its own name, so its own report ---------------------------------------

@pytest.mark.parametrize("names, expected", [
    (["bob", "bob-2", "bob"], ["bob", "bob-2", "bob-3"]),
    (["bob", "bob", "bob-2"], ["bob", "bob-3", "bob-2"]),
    (["bob", "bob", "bob", "bob-3"], ["bob", "bob-2", "bob-4", "bob-3"]),
    (["a", "b"], ["a", "b"]),
])
def test_names_are_unique_by_construction(names, expected):
    assert session._unique(names) == expected


def test_a_folder_and_files_sharing_a_name_get_their_own_reports(tmp_path):
    cls = tmp_path / "class"
    (cls / "bob").mkdir(parents=True)
    (cls / "bob" / "notes.txt").write_text("no model here")
    (cls / "bob-2.py").write_text("def build(:\n")
    (cls / "bob.py").write_text("import socket\n")
    reports = G.grade(_problem(tmp_path), [cls], tmp_path / "out")
    assert [r["submission"] for r in reports] == ["bob", "bob-2", "bob-3"]
    assert "syntax error" in json.loads((tmp_path / "out" / "bob-2" / "report.json").read_text())["requirements"][0][
        "reason"]
    assert "imports socket" in json.loads((tmp_path / "out" / "bob-3" / "report.json").read_text())["requirements"][0][
        "reason"]


# -- 7: symbolic links are not followed -------------------------------------------------------------

def test_symlinked_submissions_are_refused(tmp_path):
    solutions = tmp_path / "course" / "solutions"
    solutions.mkdir(parents=True)
    (solutions / "model.py").write_text(HONEST)
    cls = tmp_path / "class"
    cls.mkdir()
    (cls / "alice.py").write_text("def build(:\n")
    (cls / "mallory").symlink_to(solutions)
    (cls / "mallet.py").symlink_to(cls / "alice.py")
    reports = {r["submission"]: r for r in G.grade(_problem(tmp_path), [cls])}
    for name in ("mallory", "mallet"):
        assert not reports[name]["passed"]
        assert _reason(reports[name], "loads") == f"{name}{'.py' if name == 'mallet' else ''} is a symbolic link, " \
            "which the grader does not follow; submit the folder or .py file itself"
        assert "submission_sha256" not in reports[name]["provenance"]
    assert "syntax error" in _reason(reports["alice"], "loads")
