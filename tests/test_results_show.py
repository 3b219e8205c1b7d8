"""``nnlab results show``: a regression experiment trained through the command with two
worker processes, then its table on the terminal and as CSV, as a course would use them."""

from __future__ import annotations

import csv
import io
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from nnlab import experiments as E
from nnlab import results as store
from nnlab.cli import main

TESTS = Path(__file__).resolve().parent
NAME = "diabetes-mlp"


def nnlab(*args: str, results: Path) -> subprocess.CompletedProcess:
    """``python -m nnlab ARGS`` in a fresh process, with the course module importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNLAB_")}
    path = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.update(NNLAB_DATA=os.environ["NNLAB_DATA"], NNLAB_RESULTS=str(results), PYTHONPATH=path, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nnlab", *args, "--experiments", "course_regression"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=results.parent)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The course's regression experiment, one seed per variant, trained by ``nnlab train
    --jobs 2`` into a store of its own."""
    results = tmp_path_factory.mktemp("course") / "results"
    proc = nnlab("train", NAME, "--seeds", "0,1", "--jobs", "2", "--device", "cpu", results=results)
    assert proc.returncode == 0, proc.stderr
    assert "val_rmse=" in proc.stderr and "val_acc" not in proc.stderr
    return results


@pytest.fixture
def course(trained, monkeypatch):
    """The trained store, and the course's experiment registered in this process (for this
    test only: importing its module registers it)."""
    monkeypatch.setenv("NNLAB_RESULTS", str(trained))
    import course_regression

    E.register(course_regression.REGRESSION)
    yield trained
    E.unregister(NAME)


def show(capsys, *args: str) -> str:
    assert main(["results", "show", NAME, *args]) == 0
    out, err = capsys.readouterr()
    return out


def stored_runs(results: Path) -> dict:
    import json

    return json.loads((results / NAME / "result.json").read_text())["runs"]


def test_a_regression_stores_rmse_and_r2(trained):
    runs = stored_runs(trained)
    assert len(runs) == 4
    for run in runs.values():
        assert {"val_loss", "val_rmse", "val_r2", "test_loss", "test_rmse", "test_r2"} <= set(run)
        assert "val_acc" not in run and not store.run_problems(run)
        assert run["test_rmse"] ** 2 == pytest.approx(run["test_loss"], rel=1e-9)
        assert 0.2 < run["test_r2"] < 0.8  # diabetes: a linear model explains about half the variance


def test_results_show_prints_the_table(course, capsys):
    header, *rows, note, missing = show(capsys).strip().splitlines()
    assert missing.startswith("some runs are missing") and "nnlab train diabetes-mlp" in missing
    assert header.split()[:4] == ["variant", "seeds", "val", "loss"] and "test r2" in header and "seconds/run" in header
    runs = stored_runs(course)
    means = {v: statistics.fmean(r["val_rmse"] for r in runs.values() if r["variant"] == v) for v in ("mlp-16", "mlp-64")}
    best = min(means, key=means.get)  # the lower validation RMSE is chosen
    assert [r.split()[0] for r in rows] == ["mlp-16", "mlp-64"]
    assert next(r for r in rows if r.startswith(best)).split()[1] == "*"
    assert f"chosen on validation ({best})" in note
    assert "±" in rows[0]


def test_results_show_csv_parses_for_a_spreadsheet(course, capsys, tmp_path):
    text = show(capsys, "--csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["variant"] for r in table] == ["mlp-16", "mlp-64"]
    runs = stored_runs(course)
    for row in table:
        values = [r["test_rmse"] for r in runs.values() if r["variant"] == row["variant"]]
        assert row["seeds"] == "2"
        assert float(row["test_rmse_mean"]) == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert float(row["test_rmse_std"]) == pytest.approx(statistics.stdev(values), rel=1e-12)
        assert float(row["seconds_mean"]) > 0 and float(row["val_r2_mean"]) < 1
    assert sum(int(r["chosen"]) for r in table) == 1
    out = tmp_path / "table.csv"
    assert show(capsys, "--csv", str(out)) == ""
    assert out.read_text() == text


def test_results_show_of_an_unknown_experiment_is_one_line(capsys, results_dir):
    code = main(["results", "show", "mlp-10"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("nnlab: error: no experiment named 'mlp-10'") and "mlp-100" in err


def test_results_show_of_a_book_result_reads_accuracy(capsys, monkeypatch):
    """The book's classification results: accuracy columns, and the variant chosen as before."""
    monkeypatch.setenv("NNLAB_RESULTS", str(TESTS.parent / "results"))
    assert main(["results", "show", "mlp-100"]) == 0
    out = capsys.readouterr().out
    assert "val acc" in out and "test acc" in out and "rmse" not in out
    assert f"({store.chosen_variant('mlp-100')})" in out


def test_summary_and_choice_read_the_tasks_main_metric(course):
    """With the experiment's seeds cut to those trained (seeds are not hashed: the runs stay
    current), the result is complete; the summary defaults to test RMSE, and the variant
    chosen has the lower mean validation RMSE."""
    from dataclasses import replace

    import course_regression

    E.register(replace(course_regression.REGRESSION, seeds=(0, 1)), replace=True)
    assert store.status(NAME).state == "ok"
    runs = stored_runs(course)
    means = {v: statistics.fmean(r["val_rmse"] for r in runs.values() if r["variant"] == v) for v in ("mlp-16", "mlp-64")}
    chosen = store.chosen_variant(NAME)
    assert chosen == min(means, key=means.get)
    s = store.summary(NAME)
    assert s["values"] == [runs[f"{chosen}/seed={seed}"]["test_rmse"] for seed in (0, 1)]
    assert store.summary(NAME, "val_r2")["n"] == 2


def test_results_show_help_says_where_the_csv_goes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["results", "show", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and "--csv [FILE]" in out
    assert "to FILE if given, else to standard output" in out
