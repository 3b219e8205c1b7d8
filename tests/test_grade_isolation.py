"""What `nnlab grade` does where the wall cannot be built: it says which protection is
missing, and refuses to grade without bubblewrap, or without any part of it when asked to."""

from __future__ import annotations

import pytest

from nnlab import cli
from nnlab.grade import sandbox

PROBLEM = """\
name = "I"
data = "mnist"
threshold = 0.5

[rules]
allowed = ["Flatten", "Linear", "ReLU"]
"""


@pytest.fixture
def submission(tmp_path):
    (tmp_path / "p.toml").write_text(PROBLEM)
    (tmp_path / "s.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(784, 10)\n")
    return tmp_path


@pytest.mark.parametrize("iso, flags, words", [
    (sandbox.Isolation("", "", "", ("bubblewrap (bwrap) is not installed",)), [],
     "no sandbox: bubblewrap (bwrap) is not installed. Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap"),
    (sandbox.Isolation("bubblewrap 0.8.0", "uid 65534", "", ("a cgroup: memory, processes and CPU are bounded "
                                                             "per process only",)), ["--require-isolation"],
     "--require-isolation: missing a cgroup"),
])
def test_grading_without_the_wall_is_one_line_and_grades_nothing(submission, monkeypatch, capsys, iso, flags, words):
    monkeypatch.setattr(sandbox, "probe", lambda: iso)
    out = submission / "out"
    code = cli.main(["grade", str(submission / "p.toml"), str(submission / "s.py"), "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("nnlab: error: ") and words in err and "\n" not in err
    assert not out.exists()


def test_a_missing_cgroup_is_named_in_every_report():
    iso = sandbox.Isolation("bubblewrap 0.8.0", "uid 65534", "", ("a cgroup: memory, processes and CPU are "
                                                                  "bounded per process only",))
    from nnlab.grade.problem import Limits

    said = iso.describe(Limits())
    assert said["not in force"].startswith("a cgroup") and "by rlimits per process" in said["limits"]
