"""The ``nnlab`` command: help, one-line errors with suggestions, exit codes, ``results check``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import tiny_experiments as T

from nnlab import analyses
from nnlab import experiments as E
from nnlab import results as store
from nnlab.cli import main


def run(argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``nnlab ARGV``, whether it returns or exits."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nnlab: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["train", "--help"],
                                  ["results", "--help"], ["results", "check", "--help"], ["grade", "--help"]])
def test_help_of_every_command(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    assert out.startswith("usage: nnlab")
    if argv[0] == "train" and len(argv) == 2:
        for option in ("--all", "--seeds", "--device", "--resume", "--fresh"):
            assert option in out
    if argv[0] == "grade":
        assert "PROBLEM" in out.upper() and "--out" in out and "--jobs" in out


def test_module_runs_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "nnlab.cli", "train", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--resume" in proc.stdout and proc.stderr == ""


def test_unknown_experiment_suggests_close_names(capsys, results_dir):
    code, out, err = run(["train", "mlp-10"], capsys)
    assert code != 0 and out == ""
    line = one_line_error(err)
    assert "'mlp-10'" in line and "Did you mean mlp-100" in line and "nnlab list" in line


def test_unknown_experiment_without_close_names(capsys, results_dir):
    code, _, err = run(["train", "zzzz-qqqq"], capsys)
    assert code != 0
    line = one_line_error(err)
    assert "zzzz-qqqq" in line and "Did you mean" not in line


@pytest.mark.parametrize("seeds", ["a,b", "1.5", ",", "0;1"])
def test_bad_seeds_are_a_usage_error(seeds, capsys, results_dir):
    code, out, err = run(["train", "mlp-100", "--seeds", seeds], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--seeds" in line and "see `nnlab train --help`" in line


def test_seeds_outside_the_experiment_are_refused(tiny_experiment, capsys):
    code, _, err = run(["train", T.TINY.name, "--seeds", "0,7", "--device", "cpu"], capsys)
    assert code == 1
    line = one_line_error(err)
    assert "[7]" in line and "its seeds: [0, 1]" in line
    assert store.status(T.TINY.name).state == "missing"


@pytest.mark.parametrize("argv", [["train"], ["train", "mlp-100", "--all"], ["frobnicate"], []])
def test_misuse_exits_non_zero_with_one_line(argv, capsys, results_dir):
    code, out, err = run(argv, capsys)
    assert code != 0 and out == ""
    one_line_error(err)


def test_unknown_device_is_one_line(tiny_experiment, capsys):
    code, _, err = run(["train", T.TINY.name, "--device", "tpu"], capsys)
    assert code == 1 and "unknown device 'tpu'" in one_line_error(err)


def test_train_then_results_check(tiny_experiment, monkeypatch, capsys):
    monkeypatch.setattr(E, "REGISTRY", {T.TINY.name: T.TINY})
    monkeypatch.setattr(analyses, "REGISTRY", {})  # the book's stored studies are not this project's
    code, out, _ = run(["results", "check"], capsys)
    assert code == 1 and f"{T.TINY.name}: missing" in out and f"nnlab train {T.TINY.name}" in out

    code, _, err = run(["train", T.TINY.name, "--seeds", "0", "--device", "cpu"], capsys)
    assert code == 0 and "seed=0" in err
    code, out, _ = run(["results", "check"], capsys)
    assert code == 1 and f"{T.TINY.name}: incomplete" in out

    code, _, _ = run(["train", T.TINY.name, "--device", "cpu"], capsys)
    assert code == 0
    code, out, _ = run(["results", "check"], capsys)
    assert code == 0 and "all 1 results present and current" in out

    code, out, _ = run(["list"], capsys)
    assert code == 0 and T.TINY.name in out and " ok " in out

    # a changed config makes it stale; a broken file makes it damaged: both fail the check
    monkeypatch.setitem(E.REGISTRY, T.TINY.name, replace(T.TINY, train=replace(T.TINY.train, lr=1e-2)))
    code, out, _ = run(["results", "check"], capsys)
    assert code == 1 and f"{T.TINY.name}: stale" in out
    monkeypatch.setitem(E.REGISTRY, T.TINY.name, T.TINY)
    (store.experiment_dir(T.TINY.name) / "result.json").write_text("{")
    code, out, _ = run(["results", "check"], capsys)
    assert code == 1 and f"{T.TINY.name}: damaged" in out


def test_results_check_covers_every_experiment(tiny_experiment, monkeypatch, capsys):
    monkeypatch.setattr(E, "REGISTRY", {T.TINY.name: T.TINY, T.RESUMABLE.name: T.RESUMABLE})
    monkeypatch.setattr(analyses, "REGISTRY", {})
    run(["train", T.TINY.name, "--device", "cpu"], capsys)
    code, out, _ = run(["results", "check"], capsys)
    assert code == 1
    assert out.strip().splitlines() == [f"{T.RESUMABLE.name}: missing: no stored result in "
                                        f"{store.experiment_dir(T.RESUMABLE.name)}; "
                                        f"run `nnlab train {T.RESUMABLE.name}`"]


def test_diverging_training_is_one_line_error(tiny_experiment, register_experiment, capsys):
    exp = register_experiment(replace(T.TINY, name="test-diverge-cli",
                                      train=replace(T.TINY.train, optimizer="sgd", lr=1e6)))
    code, _, err = run(["train", exp.name, "--device", "cpu"], capsys)
    assert code == 1
    *runs, last = err.strip().splitlines()  # one line per failed run, then the error
    assert [line.split(": FAILED, not stored: ")[0] for line in runs] == [
        f"[{exp.name}] {i}/2 main seed={i - 1}" for i in (1, 2)]
    assert "non-finite training loss at epoch 1" in one_line_error(last)
    assert "2 of 2 runs of 'test-diverge-cli' failed" in last
    assert store.status(exp.name).state == "missing"


def test_default_jobs_one_per_core_on_cpu_unless_nnlab_jobs_says(monkeypatch):
    from nnlab.runner import default_jobs

    monkeypatch.delenv("NNLAB_JOBS")
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert default_jobs("cpu") == 6
    monkeypatch.setenv("NNLAB_JOBS", "3")
    assert default_jobs("cpu") == 3


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_nnlab_jobs_is_a_one_line_error(value, monkeypatch, capsys, tiny_experiment):
    monkeypatch.setenv("NNLAB_JOBS", value)
    code, _, err = run(["train", T.TINY.name, "--device", "cpu"], capsys)
    assert code == 1
    line = one_line_error(err)
    assert "NNLAB_JOBS" in line and repr(value) in line


def test_parallel_jobs_store_every_run(results_dir, capsys):
    """Two worker processes (spawned, so the experiment must be registered on import): every
    run of the experiment ends up stored, as with one process."""
    code, _, err = run(["train", "pooling-ablation", "--seeds", "0", "--jobs", "2", "--device", "cpu"], capsys)
    assert code == 0, err
    assert store.status("pooling-ablation").state == "incomplete"
    assert len(store.read_raw("pooling-ablation")["runs"]) == len(E.get("pooling-ablation").variants)
