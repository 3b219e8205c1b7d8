"""The speed benchmarks run end to end on a tiny budget and report what they promise.

Timings themselves are not asserted (they depend on the machine and its load); what is
asserted is that the run completes, ends with the ratio lines, writes a complete JSON record
whose numbers agree with what was printed, and that its FLOP count for the CNN equals an
independent count from the convolution arithmetic.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnlab import conv
from nnlab import results as store
from nnlab.book import experiments

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RATIO_LINE = re.compile(r"^(?P<model>[\w-]+): median samples/s \(a\) course-style (?P<a>[\d,]+), "
                        r"\(b\) nnlab\.train (?P<b>[\d,]+); b/a = (?P<ratio>\d+\.\d+)$")


def analytic_step_flops(spec: tuple[str, ...], batch: int = 32) -> int:
    """FLOPs (2 per multiply-add) of a training step's convolutions and linear layers.

    Forward: one multiply-add per weight per output position. Backward: the same again for
    the weight gradient, and again for the input gradient except at the first layer, whose
    input (the images) needs none.
    """
    shape: tuple[int, ...] = (1, 28, 28)
    total, first = 0, True
    for token in spec:
        name, *args = token.split()
        opts = dict(a.split("=") for a in args if "=" in a)
        nums = [int(a) for a in args if "=" not in a] if name in ("conv", "linear", "maxpool") else []
        if name == "conv":
            out_ch, k = nums
            new = conv.conv_output_shape(shape, out_ch, k, 1, int(opts.get("p", 0)))
            macs = new[1] * new[2] * out_ch * shape[0] * k * k
            shape = new
        elif name == "linear":
            macs = shape[0] * nums[0]
            shape = (nums[0],)
        else:
            if name == "maxpool":
                shape = conv.pool_output_shape(shape, nums[0], nums[0], 0)
            elif name == "flatten":
                shape = (math.prod(shape),)
            continue
        total += 2 * macs * batch * (2 if first else 3)
        first = False
    return total


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "train_speed.py"), "--steps", "20", "--reps", "1", "--warmup", "3",
         "--eval-reps", "1", "--eval-images", "500", "--threads", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "train_speed.json").read_text())


def test_train_speed_ends_with_ratio_lines(tiny_run):
    stdout, record = tiny_run
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("device: ")
    last = [RATIO_LINE.match(line) for line in lines[-2:]]
    assert all(last), lines[-2:]
    assert [m["model"] for m in last] == ["mlp-100", "cnn"]
    for m in last:
        rec = record["models"][m["model"]]
        assert float(m["ratio"]) == pytest.approx(rec["ratio_b_over_a"], abs=0.006)
        assert int(m["a"].replace(",", "")) == pytest.approx(rec["course_samples_per_s"], abs=1)
    assert any(line.startswith("cnn: ") and "achieved/peak" in line for line in lines)


def test_train_speed_record_is_complete_and_consistent(tiny_run):
    _, record = tiny_run
    assert record["machine"]["device"] in ("cpu", "cuda", "mps")
    assert record["machine"]["threads"] == 1
    for name in ("mlp-100", "cnn"):
        rec = record["models"][name]
        assert len(rec["course_s"]) == len(rec["nnlab_s"]) == 1
        for key in ("course_samples_per_s", "nnlab_samples_per_s", "ratio_b_over_a"):
            assert math.isfinite(rec[key]) and rec[key] > 0
        assert rec["ratio_b_over_a"] == pytest.approx(rec["nnlab_samples_per_s"] / rec["course_samples_per_s"])
        assert rec["course_samples_per_s"] == pytest.approx(20 * 32 / rec["course_s"][0])
    cnn = record["models"]["cnn"]
    assert 0 < cnn["peak_gflops"] <= cnn["best_kernel_gflops"]
    achieved = cnn["flops_per_step"] * cnn["nnlab_samples_per_s"] / 32 / 1e9
    assert cnn["nnlab_fraction_of_peak"] == pytest.approx(achieved / cnn["peak_gflops"])
    assert cnn["nnlab_fraction_of_best_kernel"] == pytest.approx(achieved / cnn["best_kernel_gflops"])
    assert set(record["eval_seconds"]) == {"mlp-100", "mlp-200", "mlp-1000", "cnn"}
    assert all(s > 0 for s in record["eval_seconds"].values())
    assert record["eval_images"] == 500


def test_cnn_flops_match_the_convolution_arithmetic(tiny_run):
    _, record = tiny_run
    spec = experiments.get("cnn").variant(store.chosen_variant("cnn")).spec
    assert record["models"]["cnn"]["flops_per_step"] == analytic_step_flops(spec)


def test_book_build_help_and_dry_run():
    script = str(BENCH / "book_build.py")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage:" in proc.stdout and "--dry-run" in proc.stdout
    proc = subprocess.run([sys.executable, script, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    clean, noop = proc.stdout.strip().splitlines()
    assert clean.startswith("clean:") and "build --all --path-output" in clean
    assert noop.startswith("noop:") and "--all" not in noop and "--path-output" in noop


def test_parallel_runs_reports_a_ratio(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "parallel_runs.py"), "--steps", "5", "--reps", "1",
                           "--models", "mlp-100", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "parallel_runs.json").read_text())
    rec = record["models"]["mlp-100"]
    assert len(rec["sequential_s"]) == len(rec["parallel_s"]) == 1
    assert rec["ratio_a_over_b"] == pytest.approx(rec["sequential_s"][0] / rec["parallel_s"][0])
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("mlp-100: parallel runs are ") and f"{rec['ratio_a_over_b']:.2f}x" in last
