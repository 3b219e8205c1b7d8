"""The speed benchmarks run end to end on a tiny budget and report what they promise.

Timings themselves are not asserted (they depend on the machine and its load); what is
asserted is that the run completes, ends with the ratio lines, writes a complete JSON record
whose numbers agree with what was printed, and that its FLOP count for the CNN equals an
independent count from the convolution arithmetic.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnlab import conv
from nnlab import results as store
from nnlab.book import experiments

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


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
        [sys.executable, str(BENCH / "train_speed.py"), "--models", "book-mlp", "book-cnn", "lenet5",
         "--steps", "4", "--reps", "1", "--warmup", "2", "--eval-reps", "1", "--eval-images", "64",
         "--threads", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "train_speed.json").read_text())


def test_train_speed_ends_with_the_goals_and_the_zoo_table(tiny_run):
    stdout, record = tiny_run
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("device: ")
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert header == len(lines) - 1 - len(record["models"])  # the table closes the output
    assert lines[header].split()[:3] == ["model", "params", "GFLOP/step"]
    rows = {line.split()[0]: line.split() for line in lines[header + 1:]}
    assert list(rows) == ["book-mlp", "book-cnn", "lenet5"]
    for name, row in rows.items():
        rec = record["models"][name]
        assert int(row[1].replace(",", "")) == rec["parameters"]
        assert float(row[6]) == pytest.approx(rec["nnlab_over_course"], abs=0.006)
        assert float(row[7]) == pytest.approx(rec["nnlab_over_bare"], abs=0.006)
    # every goal is printed as met or missed, and agrees with the record
    goal_lines = [line for line in lines if line.startswith(("meets  ", "MISSES "))]
    assert len(goal_lines) == len(record["goals"]) == 3 + 4 + 4  # the MLP has no layout goal
    for line, goal in zip(goal_lines, record["goals"]):
        assert line.startswith("meets" if goal["met"] else "MISSES") and line.endswith(goal["goal"])


def test_train_speed_record_is_complete_and_consistent(tiny_run):
    _, record = tiny_run
    assert record["machine"]["device"] in ("cpu", "cuda", "mps")
    assert record["machine"]["threads"] == 1
    for rec in record["models"].values():
        loops = {"course", "bare", "nnlab"} | ({"nnlab_default_layout"} if rec["kind"] == "cnn" else set())
        loops |= {"nnlab_bf16"} if record["bf16"] else set()
        assert set(rec["seconds"]) == loops and all(len(t) == 1 for t in rec["seconds"].values())
        sps = rec["samples_per_s"]
        assert sps["course"] == pytest.approx(4 * 32 / rec["seconds"]["course"][0])
        assert rec["nnlab_over_course"] == pytest.approx(sps["nnlab"] / sps["course"])
        assert rec["nnlab_over_bare"] == pytest.approx(sps["nnlab"] / sps["bare"])
        achieved = rec["flops_per_step"] * sps["nnlab"] / 32 / 1e9
        assert rec["nnlab_gflops"] == pytest.approx(achieved)
        assert rec["fraction_of_conv"] == pytest.approx(achieved / record["conv_gflops"])
        assert rec["eval_over_plain"] == pytest.approx(rec["eval_seconds"]["plain"] / rec["eval_seconds"]["nnlab"])
        if rec["fraction_of_conv"] < 0.5 and rec["kind"] == "cnn":  # explained by a profile
            assert rec["profile"] and all(0 < p["share"] <= 1 for p in rec["profile"])
    assert record["models"]["book-mlp"]["kind"] == "mlp" and record["models"]["lenet5"]["parameters"] == 61_706
    assert set(record["eval_seconds"]) == {"mlp-100", "mlp-200", "mlp-1000", "cnn"}
    assert all(s > 0 for s in record["eval_seconds"].values())
    assert record["eval_images"] == 64


def test_cnn_flops_match_the_convolution_arithmetic(tiny_run):
    _, record = tiny_run
    spec = experiments.get("cnn").variant(store.chosen_variant("cnn")).spec
    assert record["models"]["book-cnn"]["flops_per_step"] == analytic_step_flops(spec)


def test_zoo_models_are_the_ones_described():
    sys.path.insert(0, str(BENCH))
    try:
        import zoo
    finally:
        sys.path.remove(str(BENCH))
    import torch

    x = torch.zeros(2, 1, 28, 28)
    for build, params in ((zoo.Classic, 1_199_882), (zoo.lenet5, 61_706), (zoo.SmallResNet, 308_074),
                          (zoo.mlp_800, 1_276_810)):
        model = build()
        assert sum(p.numel() for p in model.parameters()) == params
        assert model(x).shape == (2, 10)


def test_precision_benchmark_trains_and_compares(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "precision.py"), "--epochs", "1", "--limit", "96",
                           "--seeds", "0", "1", "--precisions", "fp32", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "precision.json").read_text())
    assert [(r["precision"], r["seed"]) for r in sorted(record["runs"], key=lambda r: r["seed"])] == [
        ("fp32", 0), ("fp32", 1)]
    assert all(r["epochs"] == 1 and 0 <= r["test_acc"] <= 1 for r in record["runs"])
    assert record["summary"]["fp32"]["test_acc"]["mean"] == pytest.approx(
        sum(r["test_acc"] for r in record["runs"]) / 2)


def test_precision_benchmark_says_when_bf16_is_not_native(tmp_path):
    import torch

    from nnlab.train import bf16_native

    if bf16_native(torch.device("cpu")):
        pytest.skip("this CPU has native bfloat16")
    proc = subprocess.run([sys.executable, str(BENCH / "precision.py"), "--device", "cpu", "--precisions", "bf16",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "no native bfloat16" in proc.stdout and "0 runs" in proc.stdout


def test_classic_example_whole_process_comparison(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "classic_example.py"), "--limit", "128", "--reps", "1",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "classic_example.json").read_text())
    assert record["ratio"] == pytest.approx(record["median_seconds"]["example"] / record["median_seconds"]["nnlab"])
    assert all(len(v) == 1 and 0 <= v[0] <= 1 for v in record["test_acc"].values())
    assert proc.stdout.strip().splitlines()[-1].startswith("whole process, one epoch: example ")


def test_book_build_help_and_dry_run():
    script = str(BENCH / "book_build.py")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage:" in proc.stdout and "--dry-run" in proc.stdout
    proc = subprocess.run([sys.executable, script, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    clean, noop = proc.stdout.strip().splitlines()
    assert clean.startswith("clean:") and "build --all --path-output" in clean
    assert noop.startswith("noop:") and "--all" not in noop and "--path-output" in noop


def test_book_chapters_are_timed_from_the_store_and_recorded(tmp_path):
    """--chapters executes pages from the store, each in a fresh kernel, and records every
    page's seconds; a page without code cells is left out."""
    page = "book/appendix/reproduce"
    proc = subprocess.run([sys.executable, str(BENCH / "book_build.py"), "--chapters", "--only", page,
                           "book/appendix/bibliography", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "book_chapters-cpu.json").read_text())
    assert list(record["pages"]) == [page] and record["failed"] == []
    r = record["pages"][page]
    assert r["cells"] >= 1 and r["seconds"] > 0 and r["cpu_seconds"] > 0 and r["error"] is None
    assert record["total_seconds"] == pytest.approx(r["seconds"])
    assert f"every page executed in {record['total_seconds']:.1f} s" in proc.stdout.strip().splitlines()[-1]
    sys.path.insert(0, str(BENCH))
    try:
        import book_build
    finally:
        sys.path.remove(str(BENCH))
    table = book_build.markdown_table(record)
    assert f"| `{page}` | {r['cells']} | {r['seconds']:.1f} |" in table
    floor = record["floor"]  # a kernel that only imports, timed the same way
    assert floor["error"] is None and floor["cpu_seconds"] > 0 and "torch" in record["floor_source"]
    assert f"| a page that only imports, once | 1 | {floor['seconds']:.1f} | {floor['cpu_seconds']:.1f} |" in table


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


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="grading needs bubblewrap")
def test_grade_class_benchmark_grades_and_records(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "grade_class.py"), "--students", "2", "--jobs", "1",
                           "--epochs", "2", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "grade_class-cpu.json").read_text())
    assert record["students"] == 2 and record["passed"] == 2 and record["sandbox_median_s"] > 0
    assert record["sandbox_over_training"] == pytest.approx(
        record["sandbox_median_s"] / record["training_median_s"], rel=0.05)
    assert "sandbox / training" in proc.stdout


def test_readme_quotes_the_committed_records():
    """The Speed section's tables are the records in benchmarks/records/, rendered by the
    benchmarks' own functions: no figure there is typed by hand."""
    sys.path.insert(0, str(BENCH))
    try:
        import book_build
        import grade_class
        import precision
        import train_speed
    finally:
        sys.path.remove(str(BENCH))
    readme = (ROOT / "README.md").read_text()
    records = BENCH / "records"
    for name in ("train_speed-cpu-avx2.json", "train_speed-h200.json"):
        assert train_speed.markdown_table(json.loads((records / name).read_text())) in readme, name
    assert precision.markdown_table(json.loads((records / "precision-h200.json").read_text())) in readme
    assert grade_class.markdown_table(json.loads((records / "grade_class-cpu.json").read_text())) in readme
    assert book_build.markdown_table(json.loads((records / "book_chapters-cpu.json").read_text())) in readme
    classic = json.loads((records / "classic_example-cpu-avx2.json").read_text())
    assert f"| **{classic['ratio']:.2f}×** |" in readme
    assert f"| {classic['median_seconds']['example']:.1f} |" in readme
