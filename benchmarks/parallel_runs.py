"""Independent runs on a multi-core CPU: in parallel with one thread each, or one at a time
with every core?

Usage::

    python benchmarks/parallel_runs.py [--steps N] [--reps R] [--models mlp-100,cnn] [--out DIR]

``--models`` takes the book's experiments and the zoo models of ``train_speed.py``.

For each model, ``cores`` identical short training runs (N batches of 32 through ``nnlab.train.train``,
rounded up to whole epochs, different seeds) are done two ways, alternating for R repetitions:

(a) one after another in one worker process with ``cores`` intra-op threads (what
    ``nnlab train NAME`` does with the default ``--jobs 1``);
(b) all at once in ``cores`` worker processes with one thread each (``--jobs cores``).

Both include the worker's start-up and data loading, as a real run does. The medians of the
wall times and their ratio a/b (above 1: parallel runs are faster) are printed last and
written to ``--out`` as JSON. ``nnlab train`` uses the answer: its default ``--jobs`` is
:func:`nnlab.runner.default_jobs`.

Findings (2-core AMD EPYC KVM guest, torch 2.14.1, CPU, otherwise idle): see the README's
speed section, which quotes the JSON record of the last run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch  # noqa: E402
from train_speed import BATCH, DEFAULT_OUT, LR, git_commit, machine  # benchmarks/ is on sys.path

OUT_NAME = "parallel_runs.json"
DEFAULT_STEPS = {"mlp-100": 12000, "cnn": 300, "mlp-800": 2000, "classic": 200, "lenet5": 2000, "resnet": 200}


def one_run(name: str, steps: int, threads: int, seed: int) -> float:
    """A worker's job: about ``steps`` batches; returns its seconds (start-up excluded)."""
    torch.set_num_threads(threads)
    from train_speed import ZOO, build_model, zoo_model

    from nnlab import data
    from nnlab.train import TrainConfig, train

    t0 = time.perf_counter()
    x, y = data.mnist("train")
    n = min(steps * BATCH, len(x))  # more steps than one epoch: several epochs of the whole split
    subset = {"train": (x[:n], y[:n]), "val": data.mnist("val")}
    model = zoo_model(name, seed) if name in ZOO else build_model(name, seed)
    train(model, TrainConfig(epochs=-(-steps * BATCH // n), batch_size=BATCH, lr=LR),
          seed=seed, data=subset, device="cpu", progress=False)
    return time.perf_counter() - t0


def _init_path() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def batch_of_runs(name: str, steps: int, cores: int, parallel: bool) -> float:
    """Wall seconds for ``cores`` runs, (b) in parallel or (a) one after another."""
    workers, threads = (cores, 1) if parallel else (1, cores)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_path) as pool:
        list(pool.map(one_run, [name] * cores, [steps] * cores, [threads] * cores, range(cores)))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="batches per run (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--models", default="mlp-100,cnn",
                        help="comma-separated experiment names or zoo models of train_speed.py "
                             "(mlp-800, classic, lenet5, resnet)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for {OUT_NAME}")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or args.reps < 1:
        parser.error("--steps and --reps must be positive")
    cores = os.cpu_count() or 1
    if cores < 2:
        parser.error("this machine has one core: there is nothing to run in parallel")
    record = {"benchmark": "parallel_runs", "git_commit": git_commit(), "cores": cores,
              "machine": machine(torch.device("cpu")), "models": {}}
    for name in args.models.split(","):
        steps = args.steps or DEFAULT_STEPS.get(name, 100)
        times: dict[str, list[float]] = {"sequential_s": [], "parallel_s": []}
        for rep in range(args.reps):
            for parallel in ((False, True) if rep % 2 == 0 else (True, False)):
                key = "parallel_s" if parallel else "sequential_s"
                times[key].append(batch_of_runs(name, steps, cores, parallel))
            print(f"  {name} rep {rep + 1}/{args.reps}: (a) one at a time, {cores} threads "
                  f"{times['sequential_s'][-1]:6.1f} s   (b) {cores} in parallel, 1 thread each "
                  f"{times['parallel_s'][-1]:6.1f} s", flush=True)
        ratio = statistics.median(times["sequential_s"]) / statistics.median(times["parallel_s"])
        record["models"][name] = {**times, "steps": steps, "runs": cores, "ratio_a_over_b": ratio}
    record["machine"]["load_average_end"] = list(os.getloadavg())
    from nnlab.results import atomic_write_json

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / OUT_NAME, record)
    print(f"record: {args.out / OUT_NAME}")
    for name, rec in record["models"].items():
        print(f"{name}: parallel runs are {rec['ratio_a_over_b']:.2f}x as fast as one at a time with {cores} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
