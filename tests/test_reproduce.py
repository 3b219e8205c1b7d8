"""`nnlab results reproduce`: a graded verdict per run (identical, equal to rounding, within
seed noise, different), a --tolerance for the exit status, and one-line usage errors."""

from __future__ import annotations

import math

import pytest
import tiny_experiments as T
from test_cli import one_line_error, run

from nnlab import reproduction, runner
from nnlab import results as store

# two stored seeds of the tiny experiment, with metrics chosen so that the spread is known:
# test_acc std 0.1/sqrt(2) ~ 0.0707, test_loss std 0.2/sqrt(2) ~ 0.141
STORED = {0: {"val_acc": 0.5, "val_loss": 1.0, "test_acc": 0.5, "test_loss": 1.0},
          1: {"val_acc": 0.6, "val_loss": 1.2, "test_acc": 0.6, "test_loss": 1.2}}


@pytest.fixture
def stored_tiny(tiny_experiment):
    for seed, metrics in STORED.items():
        store.record_run(T.TINY, "main", seed, {**metrics, "threads": 1, "cpu_capability": "AVX2"},
                         T.seeded_model(T.TINY.variants[0].spec, seed))
    return T.TINY


@pytest.fixture
def retrained(monkeypatch):
    """Make the retraining return the stored metrics changed by ``change(seed, metrics)``."""
    def set_change(change):
        def fake_train_one(exp, variant, seed, **_):
            metrics = dict(STORED[seed])
            change(seed, metrics)
            return {**metrics, "threads": 1, "cpu_capability": "AVX512"}, None

        monkeypatch.setattr(runner, "train_one", fake_train_one)

    return set_change


def reproduce(capsys, *extra):
    code, out, err = run(["results", "reproduce", T.TINY.name, "--seeds", "0", *extra], capsys)
    lines = out.strip().splitlines()
    assert len(lines) == 2, out + err
    return code, lines[0], lines[1], err


def test_identical(stored_tiny, retrained, capsys):
    retrained(lambda seed, m: None)
    code, row, summary, _ = reproduce(capsys, "--tolerance", "identical")
    assert code == 0
    assert row.endswith(": identical")
    assert summary.startswith("1 of 1 run(s) reproduced at tolerance identical (1 identical, 0 equal to rounding")


def test_losses_within_rounding_are_reproduced_by_default(stored_tiny, retrained, capsys):
    """Accuracies equal, losses within 1e-9 relative (another CPU's kernels): reproduced."""
    def change(seed, m):
        m["test_loss"] *= 1 + 1e-9
        m["val_loss"] *= 1 - 3e-10

    retrained(change)
    code, row, summary, _ = reproduce(capsys)
    assert code == 0, row
    assert "equal to floating-point rounding (largest relative difference 1.0e-09, test_loss)" in row
    assert "DIFFERENT" not in row
    assert summary.startswith("1 of 1 run(s) reproduced at tolerance rounding (0 identical, 1 equal to rounding")
    # but not at the strictest tolerance
    code, _, summary, _ = reproduce(capsys, "--tolerance", "identical")
    assert code == 1 and summary.startswith("0 of 1 run(s) reproduced at tolerance identical")


def test_within_seed_noise(stored_tiny, retrained, capsys):
    """An accuracy off by a quarter of the seeds' spread is seed noise, not rounding."""
    retrained(lambda seed, m: m.update(test_acc=m["test_acc"] + 0.02, test_loss=m["test_loss"] * 1.01))
    code, row, summary, _ = reproduce(capsys)
    assert code == 1  # the default tolerance is rounding
    assert "within seed noise: " in row and "test_acc stored 0.5, now 0.52 (0.28 std of the 2 stored seeds)" in row
    assert summary.startswith("0 of 1 run(s) reproduced at tolerance rounding (0 identical, 0 equal to rounding, "
                              "1 within seed noise, 0 different)")
    code, _, summary, _ = reproduce(capsys, "--tolerance", "noise")
    assert code == 0 and summary.startswith("1 of 1 run(s) reproduced at tolerance noise")


def test_different(stored_tiny, retrained, capsys):
    retrained(lambda seed, m: m.update(test_acc=0.1))
    code, row, summary, _ = reproduce(capsys, "--tolerance", "noise")
    assert code == 1
    assert "DIFFERENT: test_acc stored 0.5, now 0.1 (5.7 std of the 2 stored seeds)" in row
    assert "(stored run trained with CPU kernels AVX2, this one AVX512)" in row
    assert summary.startswith("0 of 1 run(s) reproduced at tolerance noise") and summary.endswith("1 different)")


def test_one_stored_seed_has_no_noise_level(tiny_experiment, retrained, capsys):
    store.record_run(T.TINY, "main", 0, {**STORED[0], "threads": 1, "cpu_capability": "AVX2"},
                     T.seeded_model(T.TINY.variants[0].spec, 0))
    retrained(lambda seed, m: m.update(test_acc=m["test_acc"] + 1e-3))
    code, row, _, _ = reproduce(capsys, "--tolerance", "noise")
    assert code == 1
    assert "DIFFERENT: test_acc stored 0.5, now 0.501" in row and "no seed spread to compare with" in row


def test_a_real_retraining_is_identical(tiny_experiment, capsys):
    code, _, err = run(["train", T.TINY.name, "--device", "cpu"], capsys)
    assert code == 0, err
    code, out, _ = run(["results", "reproduce", T.TINY.name, "--tolerance", "identical"], capsys)
    assert code == 0, out
    assert out.strip().splitlines()[-1].startswith("2 of 2 run(s) reproduced at tolerance identical (2 identical")


def test_unknown_variant_is_a_one_line_usage_error(tiny_experiment, capsys):
    code, out, err = run(["results", "reproduce", T.TINY.name, "--variants", "mian"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "no variant 'mian'" in line and "its variants: main" in line and "Did you mean main?" in line


def test_bad_tolerance_is_a_usage_error(tiny_experiment, capsys):
    code, _, err = run(["results", "reproduce", T.TINY.name, "--tolerance", "close"], capsys)
    assert code == 2 and "--tolerance" in one_line_error(err)


@pytest.mark.parametrize("stored, now, verdict", [
    ({"test_acc": 0.9, "test_loss": 0.3}, {"test_acc": 0.9, "test_loss": 0.3}, "identical"),
    ({"test_acc": 0.9, "test_loss": 0.3}, {"test_acc": 0.9, "test_loss": 0.3 * (1 + 5e-7)}, "rounding"),
    ({"test_acc": 0.9, "test_loss": 0.3}, {"test_acc": 0.9, "test_loss": 0.3 * (1 + 5e-6)}, "noise"),
    ({"test_acc": 0.9, "test_loss": 0.3}, {"test_acc": 0.9001, "test_loss": 0.3}, "noise"),
    ({"test_acc": 0.9, "test_loss": 0.3}, {"test_acc": 0.95, "test_loss": 0.3}, "different"),
    ({"test_acc": 0.9, "test_loss": 0.3}, {"test_acc": 0.9, "test_loss": math.nan}, "different"),
    ({"test_acc": None, "test_loss": 0.3}, {"test_acc": 0.9, "test_loss": 0.3}, "different"),
])
def test_compare_levels(stored, now, verdict):
    spread = {"test_acc": 0.01, "test_loss": 0.02}
    assert reproduction.compare(stored, now, spread)["verdict"] == verdict


def test_spread_is_the_std_over_seeds():
    spread = reproduction.seed_spread([STORED[0], STORED[1], {"test_acc": None}])
    assert spread["test_acc"] == pytest.approx(0.1 / math.sqrt(2))
    assert reproduction.seed_spread([STORED[0]])["test_acc"] is None
