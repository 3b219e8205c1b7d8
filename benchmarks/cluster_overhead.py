"""What does training through a Ray cluster cost, against the local process pool?

Usage::

    python benchmarks/cluster_overhead.py [--runs 8] [--epochs E] [--reps R] [--cpus N] [--out DIR]

One sweep, ``--runs`` independent runs of a 784-100-10 MLP (one thread each) on synthetic
MNIST-shaped data carried by value, is trained two ways, alternating for R repetitions, each
time by a fresh driver process (as each ``nnlab train`` command is) into an empty store:

(a) the local process pool, ``--cpus`` workers (``nnlab train NAME --jobs N``);
(b) a one-node Ray cluster on this machine with ``--cpus`` CPUs, started once by this script on
    the loopback interface (:class:`nnlab.cluster.LocalCluster`), ``nnlab train NAME --cluster``.

Both times count from before the pool starts or the driver connects to after the last run is
stored, so both include their workers' start-up (importing torch) and the store writes; neither
counts the driver's own imports. The cluster's driver then trains the same sweep once more
into another empty store with the workers Ray has already started ("warm", as a second
experiment of ``nnlab train --all --cluster`` does). Printed last and written to ``--out`` as
JSON: the medians, their ratio b/a and Ray's overhead per run, (b - a) / runs. The runs of
both ways must store the same metrics and weights (checked).

Findings (2-core AMD EPYC KVM guest, torch 2.14.1, Ray 2.60.0): see the README's section
*Training on a cluster*, which quotes the JSON record of the last run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nnlab import experiments as E
from nnlab.data import ArrayData
from nnlab.models import mlp
from nnlab.train import TrainConfig

OUT_NAME = "cluster_overhead.json"
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
SIZES = {"train": 4096, "val": 1024, "test": 1024}


def synthetic(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten noisy class prototypes, MNIST-shaped; the same in every process."""
    protos = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3}[split])
    labels = torch.randint(0, 10, (SIZES[split],), generator=g)
    return protos[labels] + 6.0 * torch.randn(SIZES[split], 1, 28, 28, generator=g), labels


def sweep(runs: int, epochs: int) -> E.Experiment:
    data = ArrayData("synthetic-bench", **{s: synthetic(s) for s in SIZES}, normalise=False,
                     description="ten noisy prototypes, MNIST-shaped")
    return E.Experiment(name="bench-cluster-overhead", purpose="A sweep of small MLPs.", chapter="benchmarks",
                        variants=(E.Variant("mlp-100", tuple(mlp([100], classes=data))),),
                        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3), seeds=tuple(range(runs)),
                        data=data)


def _stored(results: Path, name: str) -> list[list]:
    runs = json.loads((results / name / "result.json").read_text())["runs"]
    return sorted([k, r["test_acc"], r["val_loss"], r["weights"]["sha256"]] for k, r in runs.items())


def child(way: str, runs: int, epochs: int, cpus: int, address: str | None) -> dict:
    """One driver: the sweep trained one way into empty stores; seconds and what was stored."""
    from nnlab.runner import run_experiment

    exp = sweep(runs, epochs)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-") as scratch:
        os.environ["NNLAB_RESULTS"] = str(Path(scratch) / "cold")
        t0 = time.perf_counter()
        if way == "local":
            run_experiment(exp, jobs=cpus, device="cpu", progress=False, log=lambda _: None)
        else:
            from nnlab.cluster import connect

            connect(address)
            out["connect_s"] = time.perf_counter() - t0
            run_experiment(exp, cluster=address, device="cpu", progress=False, log=lambda _: None)
        out["seconds"] = time.perf_counter() - t0
        out["stored"] = _stored(Path(scratch) / "cold", exp.name)
        if way == "cluster":
            os.environ["NNLAB_RESULTS"] = str(Path(scratch) / "warm")
            t0 = time.perf_counter()
            run_experiment(exp, cluster=address, device="cpu", progress=False, log=lambda _: None)
            out["warm_s"] = time.perf_counter() - t0
    return out


def _run_child(way: str, args, cluster) -> dict:
    env = {**os.environ, **cluster.env}
    cmd = [sys.executable, __file__, "--child", way, "--runs", str(args.runs), "--epochs", str(args.epochs),
           "--cpus", str(args.cpus), "--address", cluster.address]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"the {way} driver failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="runs in the sweep (default 8)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4: a few seconds)")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                        help="pool workers, and the cluster's CPUs (default: every core)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for {OUT_NAME}")
    parser.add_argument("--child", choices=("local", "cluster"), help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.runs, args.epochs, args.reps, args.cpus) < 1:
        parser.error("--runs, --epochs, --reps and --cpus must be positive")
    if args.child:
        print(json.dumps(child(args.child, args.runs, args.epochs, args.cpus, args.address)))
        return 0

    # the drivers import no more than `nnlab train` does: a pool worker imports this file again
    from train_speed import git_commit, machine  # benchmarks/ is on sys.path

    from nnlab.cluster import LocalCluster

    record = {"benchmark": "cluster_overhead", "git_commit": git_commit(), "runs": args.runs,
              "epochs": args.epochs, "cpus": args.cpus, "machine": machine(torch.device("cpu")),
              "local_s": [], "cluster_s": [], "cluster_connect_s": [], "cluster_warm_s": []}
    t0 = time.perf_counter()
    cluster = LocalCluster(num_cpus=args.cpus)
    cluster.start()
    record["cluster_start_s"] = time.perf_counter() - t0
    try:
        from importlib.metadata import version

        record["machine"]["ray"] = version("ray")
        stored = {}
        for rep in range(args.reps):
            for way in (("local", "cluster") if rep % 2 == 0 else ("cluster", "local")):
                out = _run_child(way, args, cluster)
                stored.setdefault(way, out["stored"])
                if out["stored"] != stored[way]:
                    raise SystemExit(f"the {way} runs stored other numbers in repetition {rep + 1}")
                if way == "local":
                    record["local_s"].append(out["seconds"])
                else:
                    record["cluster_s"].append(out["seconds"])
                    record["cluster_connect_s"].append(out["connect_s"])
                    record["cluster_warm_s"].append(out["warm_s"])
            print(f"  rep {rep + 1}/{args.reps}: (a) local pool {record['local_s'][-1]:6.1f} s   (b) Ray cluster "
                  f"{record['cluster_s'][-1]:6.1f} s (connect {record['cluster_connect_s'][-1]:.1f} s; "
                  f"again, warm workers: {record['cluster_warm_s'][-1]:.1f} s)", flush=True)
        record["same_results"] = stored["local"] == stored["cluster"]
        if not record["same_results"]:
            raise SystemExit("the cluster's runs stored other metrics or weights than the local pool's")
    finally:
        t1 = time.perf_counter()
        cluster.stop()
        record["cluster_stop_s"] = time.perf_counter() - t1
    a, b = statistics.median(record["local_s"]), statistics.median(record["cluster_s"])
    warm = statistics.median(record["cluster_warm_s"])
    record.update({"local_median_s": a, "cluster_median_s": b, "ratio_b_over_a": b / a,
                   "overhead_per_run_s": (b - a) / args.runs, "warm_ratio_over_a": warm / a,
                   "warm_overhead_per_run_s": (warm - a) / args.runs})
    record["machine"]["load_average_end"] = list(os.getloadavg())
    from nnlab.fileio import atomic_write_json

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / OUT_NAME, record)
    print(f"record: {args.out / OUT_NAME}")
    print(f"cluster start {record['cluster_start_s']:.1f} s, stop {record['cluster_stop_s']:.1f} s (not counted)")
    print(f"warm workers: {warm:.1f} s = {warm / a:.2f}x the local pool, "
          f"{(warm - a) / args.runs:+.2f} s per run")
    print(f"{args.runs} runs: median wall s (a) local pool {a:.1f}, (b) Ray cluster {b:.1f}; b/a = {b / a:.2f}; "
          f"Ray's overhead per run = {(b - a) / args.runs:+.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
