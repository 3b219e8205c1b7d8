"""What does grading a class cost, and how much of it is the sandbox?

Usage::

    python benchmarks/grade_class.py [--students 40] [--jobs 2] [--epochs 2] [--out DIR]

A class of ``--students`` honest submissions of the book's quick problem 2C (the appendix's
``grading_example/problem.toml``: a 2,000-image slice of MNIST, a fixed recipe) is graded
with ``nnlab grade --jobs N`` semantics, in this process's pool. Every report says how long
its submission spent in its sandbox (starting bubblewrap, importing torch, building and
exporting the model) and how long the grader then trained it. Printed last and written to
``--out`` as JSON: the class's wall time, seconds per submission, and the medians of the two
parts with their ratio (sandbox / training), both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from nnlab import grade as G

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "book" / "appendix" / "grading_example"
MODEL = '''from torch import nn


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, {w}), nn.ReLU(), nn.Linear({w}, 10))
'''


def markdown_table(record: dict) -> str:
    """The README's table of one record."""
    return "\n".join([
        "| measurement | result |", "|---|---|",
        f"| class of {record['students']}, `--jobs {record['jobs']}`: wall time / per submission | "
        f"{record['wall_seconds']:.0f} s / **{record['seconds_per_submission']:.1f} s** |",
        f"| one submission's sandbox (median) | {record['sandbox_median_s']:.1f} s |",
        f"| the grader's training of it, {record['epochs']} epochs (median) | {record['training_median_s']:.2f} s |",
        f"| sandbox / training | {record['sandbox_over_training']:.0f}× |"])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "records")
    args = ap.parse_args(argv)
    problem = G.load_problem(EXAMPLE / "problem.toml")
    problem = replace(problem, budget=replace(problem.budget, recipe=replace(problem.budget.recipe,
                                                                             epochs=args.epochs)))
    with tempfile.TemporaryDirectory() as tmp:
        cls = Path(tmp) / "class"
        cls.mkdir()
        for i in range(args.students):  # widths 32..100: an honest class, not one model 40 times
            (cls / f"student{i:02d}.py").write_text(MODEL.format(w=32 + (i * 7) % 69))
        G.load_inputs(problem)
        t0 = time.perf_counter()
        reports = G.grade(problem, [cls], Path(tmp) / "out", jobs=args.jobs, progress=False)
        wall = time.perf_counter() - t0
    sandbox = [r["timing"]["sandbox_seconds"] for r in reports]
    training = [sum(r["timing"]["training_seconds"].values()) for r in reports]
    record = {"students": args.students, "jobs": args.jobs, "epochs": args.epochs,
              "passed": sum(r["passed"] for r in reports), "wall_seconds": round(wall, 1),
              "seconds_per_submission": round(wall / args.students, 2),
              "sandbox_median_s": round(statistics.median(sandbox), 2),
              "training_median_s": round(statistics.median(training), 2),
              "sandbox_over_training": round(statistics.median(sandbox) / statistics.median(training), 2),
              "isolation": reports[0]["isolation"]["sandbox"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grade_class-cpu.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['passed']} of {args.students} passed; {wall:.1f} s with --jobs {args.jobs}: "
          f"{record['seconds_per_submission']:.2f} s per submission")
    print(markdown_table(record))
    print(f"per submission (medians): sandbox {record['sandbox_median_s']:.2f} s, grader's training "
          f"{record['training_median_s']:.2f} s; ratio sandbox/training {record['sandbox_over_training']:.2f}")
    return record


if __name__ == "__main__":
    main()
