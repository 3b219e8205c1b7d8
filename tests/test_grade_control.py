"""The shuffled-label control of `nnlab grade`: under a budget the grader trains, a passing
graph is trained again from the same start on training labels shuffled by a fixed
permutation and scored on the true test labels. Labels never enter a graph, so a graph that
scores without learning them (weights written into its structure: a template matcher built
of slices, sums and doublings, which no other check can refuse) still scores and fails; a
graph that learns falls to chance and passes as before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from nnlab import cli
from nnlab import grade as G
from nnlab.grade import grader, sandbox

pytestmark = pytest.mark.skipif(not sandbox.probe().tool, reason="bubblewrap is not installed here")

ATTACKS = Path(__file__).parent / "grade_attacks"

PROBLEM = """\
name = "CTRL"
data = "mnist"
threshold = 0.75
seeds = [0]
threads = 1
train_size = 2000
test_size = 2000

[rules]
name = "CTRL: at most 100 hidden units"
allowed = ["Dropout", "Flatten", "Linear", "ReLU", "Softmax"]
max_hidden_units = 100

[budget]
mode = "fixed"
epochs = 1
batch_size = 32
lr = LR

[limits]
cpu_seconds = 60
memory_mib = 1024
wall_seconds = 180
"""

HONEST = """\
from torch import nn


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
"""


def _grade(tmp_path: Path, lr: str) -> dict:
    cls = tmp_path / "class"
    cls.mkdir()
    shutil.copyfile(ATTACKS / "template_matcher.py", cls / "template.py")
    (cls / "honest.py").write_text(HONEST)
    (tmp_path / "problem.toml").write_text(PROBLEM.replace("LR", lr))
    out = tmp_path / "out"
    assert cli.main(["grade", str(tmp_path / "problem.toml"), str(cls), "--out", str(out), "--jobs", "2"]) == 0
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}


def _reason(report: dict, key: str) -> str:
    return next(r["reason"] for r in report["requirements"] if r["requirement"] == key)


def test_a_template_in_the_graph_fails_the_shuffled_label_control(tmp_path):
    """A rate at which nothing can learn in one epoch: the honest model stays at chance and
    fails on accuracy; the template scores about 80% without learning, and the control
    shows it."""
    reports = _grade(tmp_path, "0.0000001")
    template, honest = reports["template"], reports["honest"]
    assert template["accuracy"]["mean"] >= 0.75  # what it scored with the true labels
    control = template["accuracy"]["shuffled_label_control"]
    assert control["accuracy"] > control["bound"] and control["accuracy"] >= 0.75
    assert not template["passed"] and G.failures(template)[0]["requirement"] == "accuracy"
    reason = _reason(template, "accuracy")
    assert "shuffled at random it still scores" in reason and "carries weights of its own" in reason
    assert "\n" not in reason
    assert not honest["passed"] and "is below the threshold" in _reason(honest, "accuracy")
    assert "shuffled_label_control" not in honest["accuracy"]  # a failing graph needs no control


def test_a_graph_that_learns_passes_the_control_at_chance(tmp_path):
    reports = _grade(tmp_path, "0.005")
    honest = reports["honest"]
    assert honest["passed"], G.first_failure(honest)
    control = honest["accuracy"]["shuffled_label_control"]
    assert control["accuracy"] <= control["bound"]
    assert "trained on shuffled labels it scores" in _reason(honest, "accuracy")


def test_the_control_bound_is_chance_plus_four_standard_errors():
    labels = torch.tensor([0] * 30 + [1] * 50 + [2] * 20)
    chance, bound = grader.control_bound(labels, 3)
    assert chance == 0.5 and bound == pytest.approx(0.5 + 4 * (0.25 / 100) ** 0.5 + 0.02)
