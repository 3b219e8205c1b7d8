"""Stored analyses (nnlab.analyses): computed by `nnlab train`, hashed on their inputs,
checked by `nnlab results check`, and read without computing again."""

from __future__ import annotations

import json
import sys

import pytest

from nnlab import analyses
from nnlab import results as store
from nnlab.cli import main

NAME = "test-tiny"
ANALYSIS = "test-tiny-mean"
MODULE = "tiny_analysis_code"
CODE = '''
from nnlab import results as store

CALLS = []


def mean_test_acc():
    CALLS.append(1)
    runs = store.runs("test-tiny")
    return {"mean": sum(r["test_acc"] for r in runs) / len(runs), "seeds": [r["seed"] for r in runs]}
'''


@pytest.fixture
def analysis(tiny_experiment, tmp_path, monkeypatch, capsys):
    """The tiny experiment trained and stored, and an analysis of it registered, whose code
    lives in a module of its own in ``tmp_path`` (to edit)."""
    (tmp_path / f"{MODULE}.py").write_text(CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    module = __import__(MODULE)
    a = analyses.Analysis(name=ANALYSIS, purpose="Mean test accuracy.", chapter="tests",
                          experiments=(NAME,), compute=module.mean_test_acc)
    monkeypatch.setitem(analyses.REGISTRY, ANALYSIS, a)
    assert main(["train", NAME, "--device", "cpu"]) == 0
    capsys.readouterr()
    return module


def cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


def test_an_analysis_is_computed_by_train_stored_and_read_without_computing(analysis, capsys):
    assert analysis.CALLS == [1]  # training its experiment computed it
    assert json.loads(analyses.path(ANALYSIS).read_text())["threads"] == 1  # computed on one thread
    assert cli(["results", "check", NAME, ANALYSIS], capsys)[0] == 0
    data = analyses.load(ANALYSIS)
    runs = store.runs(NAME)
    assert data == {"mean": pytest.approx(sum(r["test_acc"] for r in runs) / 2), "seeds": [0, 1]}
    code, out = cli(["train", ANALYSIS], capsys)
    assert code == 0 and "current: nothing to compute" in out and analysis.CALLS == [1]
    code, out = cli(["train", ANALYSIS, "--fresh"], capsys)
    assert code == 0 and "computed in" in out and analysis.CALLS == [1, 1]
    assert ANALYSIS in cli(["list"], capsys)[1]


def test_a_missing_analysis_is_reported_and_computed(analysis, capsys):
    analyses.path(ANALYSIS).unlink()
    code, out = cli(["results", "check", ANALYSIS], capsys)
    assert code == 1 and f"{ANALYSIS}: missing" in out and f"nnlab train {ANALYSIS}" in out
    with pytest.raises(store.MissingResult, match=f"nnlab train {ANALYSIS}"):
        analyses.load(ANALYSIS)
    assert cli(["train", ANALYSIS], capsys)[0] == 0 and analysis.CALLS == [1, 1]
    assert cli(["results", "check", ANALYSIS], capsys)[0] == 0


def test_retraining_a_run_makes_the_analysis_stale_and_train_refreshes_it(analysis, capsys):
    before = analyses.load(ANALYSIS)
    assert main(["train", NAME, "--device", "cpu", "--seeds", "1", "--fresh"]) == 0
    assert analysis.CALLS == [1, 1]  # `nnlab train NAME` refreshed the analysis of NAME
    assert analyses.status(ANALYSIS).state == "ok"
    store_file = store.experiment_dir(NAME) / "result.json"
    data = json.loads(store_file.read_text())
    data["runs"]["main/seed=0"]["test_acc"] = 0.5  # a stored run that differs from the one analysed
    store_file.write_text(json.dumps(data))
    st = analyses.status(ANALYSIS)
    assert st.state == "stale" and f"the stored runs of {NAME}" in st.detail
    code, out = cli(["results", "check", ANALYSIS], capsys)
    assert code == 1 and f"{ANALYSIS}: stale" in out
    with pytest.raises(store.StaleResult, match=f"nnlab train {ANALYSIS}"):
        analyses.load(ANALYSIS)
    assert cli(["train", ANALYSIS], capsys)[0] == 0
    assert analyses.load(ANALYSIS)["mean"] != before["mean"]


def test_editing_the_analysis_code_makes_it_stale(analysis, tmp_path):
    (tmp_path / f"{MODULE}.py").write_text(CODE + "\n# a change in the analysis code\n")
    st = analyses.status(ANALYSIS)
    assert st.state == "stale" and f"the source of {MODULE}" in st.detail


def test_a_damaged_analysis_is_refused_and_computed_again(analysis, capsys):
    path = analyses.path(ANALYSIS)
    stored = json.loads(path.read_text())
    stored["data"]["mean"] = 1.0  # altered by hand: the checksum no longer matches
    path.write_text(json.dumps(stored))
    code, out = cli(["results", "check", ANALYSIS], capsys)
    assert code == 1 and f"{ANALYSIS}: damaged" in out and "sha256" in out
    with pytest.raises(store.DamagedResult):
        analyses.load(ANALYSIS)
    path.write_text("{not json")
    assert analyses.status(ANALYSIS).state == "damaged"
    assert cli(["train", ANALYSIS], capsys)[0] == 0 and analysis.CALLS == [1, 1]
    assert analyses.load(ANALYSIS)["mean"] < 1.0


def test_an_analysis_cannot_take_an_experiments_name(tiny_experiment):
    with pytest.raises(ValueError, match="name of an experiment"):
        analyses.register(analyses.Analysis(name=NAME, purpose="", chapter="", experiments=(NAME,),
                                            compute=dict))


def test_an_analysis_of_fixed_data_only_is_current_while_its_code_is_unchanged(results_dir, tmp_path,
                                                                              monkeypatch, capsys):
    """experiments=(): a slow study of fixed data, hashed on its source alone."""
    module_name = "fixed_study_code"
    (tmp_path / f"{module_name}.py").write_text("CALLS = []\n\n\ndef study():\n    CALLS.append(1)\n"
                                                "    return {'squares': [i * i for i in range(4)]}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    module = __import__(module_name)
    monkeypatch.setitem(analyses.REGISTRY, "fixed-study", analyses.Analysis(
        name="fixed-study", purpose="Squares.", chapter="tests", experiments=(), compute=module.study))
    assert analyses.is_analysis("fixed-study") and analyses.dependants(["anything"]) == []
    assert analyses.status("fixed-study").state == "missing"
    assert cli(["train", "fixed-study"], capsys)[0] == 0 and module.CALLS == [1]
    assert analyses.load("fixed-study") == {"squares": [0, 1, 4, 9]}
    assert analyses.inputs("fixed-study")["experiments"] == {}
    (tmp_path / f"{module_name}.py").write_text((tmp_path / f"{module_name}.py").read_text() + "# edited\n")
    st = analyses.status("fixed-study")
    assert st.state == "stale" and f"the source of {module_name}" in st.detail
