"""Reduced precision on the book's CNN: bf16 autocast against fp32, same seeds, same recipe.

Usage::

    python benchmarks/precision.py [--seeds 0 1 2] [--epochs N] [--device cuda] [--jobs J]

Trains the chosen variant of the registered ``cnn`` experiment (its model and recipe, 10
epochs at batch 32) once per seed with ``precision="fp32"`` and once with ``"bf16"``, and
reports validation and test accuracy and training time of each, their means and standard
deviations, and the per-seed differences. Stored book results stay fp32; this benchmark
writes only ``--out``/precision.json (atomically) and trains nothing into ``results/``.

Each (precision, seed) run is its own process, ``--jobs`` of them at a time: on a GPU, runs
at batch 32 are bound by kernel launches rather than arithmetic, so several share one GPU
with little loss. On a CPU keep ``--jobs 1`` (the runs would compete for the cores). bf16
needs native bfloat16 arithmetic (``nnlab.train.bf16_native``); where the device lacks it
the benchmark says so and trains nothing.
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

ROOT = Path(__file__).resolve().parents[1]
if "NNLAB_DATA" not in os.environ and (ROOT.parent / "shared" / "data" / "MNIST" / "raw").is_dir():
    os.environ["NNLAB_DATA"] = str(ROOT.parent / "shared" / "data")  # as the Makefile does

import torch  # noqa: E402

from nnlab import experiments, models  # noqa: E402
from nnlab import results as store  # noqa: E402
from nnlab.results import atomic_write_json  # noqa: E402
from nnlab.train import bf16_native, pick_device, train  # noqa: E402

EXPERIMENT = "cnn"
DEFAULT_OUT = ROOT / "benchmarks" / "out"
OUT_NAME = "precision.json"


def one_run(precision: str, seed: int, epochs: int | None, device: str, limit: int | None = None) -> dict:
    """Train the book's CNN once; the record of the run (no weights)."""
    import dataclasses

    exp = experiments.get(EXPERIMENT)
    name = store.chosen_variant(EXPERIMENT) if store.status(EXPERIMENT).state == "ok" else exp.variants[0].name
    variant = exp.variant(name)
    config = dataclasses.replace(exp.train_config(variant), precision=precision,
                                 **({"epochs": epochs} if epochs else {}))
    torch.manual_seed(seed)
    model = models.build(variant.spec, exp.data.input_shape)
    torch.set_num_threads(config.threads)
    data = exp.data
    if limit:  # a smoke test: the first ``limit`` images of every split
        data = {split: tuple(t[:limit] for t in exp.data.load(split)) for split in ("train", "val", "test")}
    res = train(model, config, seed, data=data, device=device, progress=False)
    return {"precision": precision, "seed": seed, "variant": name, "epochs": config.epochs,
            "val_acc": res.val_acc, "test_acc": res.test_acc, "seconds": res.seconds,
            "epoch_seconds": res.history["seconds"], "device": res.device,
            "gpu": torch.cuda.get_device_name() if res.device.startswith("cuda") else None,
            "memory_format": res.extra.get("memory_format")}


def summary(runs: list[dict]) -> dict:
    out: dict = {}
    for precision in ("fp32", "bf16"):
        rs = [r for r in runs if r["precision"] == precision]
        if not rs:
            continue
        out[precision] = {k: {"mean": statistics.mean(r[k] for r in rs),
                              "std": statistics.stdev(r[k] for r in rs) if len(rs) > 1 else 0.0}
                          for k in ("val_acc", "test_acc", "seconds")}
    by_seed = {(r["precision"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs if ("fp32", r["seed"]) in by_seed and ("bf16", r["seed"]) in by_seed})
    if seeds:
        out["bf16_minus_fp32"] = {k: [by_seed["bf16", s][k] - by_seed["fp32", s][k] for s in seeds]
                                  for k in ("val_acc", "test_acc")}
        out["speedup"] = [by_seed["fp32", s]["seconds"] / by_seed["bf16", s]["seconds"] for s in seeds]
    return out


def markdown_table(record: dict) -> str:
    """The summary of a record as the README quotes it (a test holds the two equal)."""
    rows = ["| precision | validation accuracy | test accuracy | seconds per run (six at once) |",
            "|---|---|---|---|"]
    for p in ("fp32", "bf16"):
        x = record["summary"][p]
        rows.append(f"| {p} | {100 * x['val_acc']['mean']:.2f} ± {100 * x['val_acc']['std']:.2f}% | "
                    f"{100 * x['test_acc']['mean']:.2f} ± {100 * x['test_acc']['std']:.2f}% | "
                    f"{x['seconds']['mean']:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke tests)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--limit", type=int, default=None, help="images per split (smoke tests only)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1; several on a GPU)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for {OUT_NAME}")
    parser.add_argument("--one", nargs=3, metavar=("PRECISION", "SEED", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1 or any(v is not None and v < 1 for v in (args.epochs, args.limit)):
        parser.error("--jobs, --epochs and --limit must be positive")
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if args.one:  # a child: one run, its record as JSON in FILE
        Path(args.one[2]).write_text(json.dumps(one_run(args.one[0], int(args.one[1]), args.epochs, str(device), args.limit)))
        return 0
    if "bf16" in args.precisions and not bf16_native(device):
        print(f"{device}: no native bfloat16 arithmetic here; bf16 is not measured on this machine")
        args.precisions = [p for p in args.precisions if p != "bf16"]
    todo = [(p, s) for s in args.seeds for p in args.precisions]
    print(f"{len(todo)} runs of the book's CNN on {device}, {args.jobs} at a time", flush=True)
    runs, running = [], []
    t0 = time.perf_counter()

    def record() -> dict:
        return {"benchmark": "precision", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "device": str(device), "torch": torch.__version__, "jobs": args.jobs,
                "wall_seconds": time.perf_counter() - t0, "runs": runs, "summary": summary(runs)}

    out = args.out / OUT_NAME
    with tempfile.TemporaryDirectory() as tmp:
        while todo or running:
            while todo and len(running) < args.jobs:
                p, s = todo.pop(0)
                log = open(Path(tmp) / f"{p}-{s}.log", "w+")
                cmd = [sys.executable, __file__, "--one", p, str(s), str(Path(tmp) / f"{p}-{s}.json"),
                       "--device", str(device)]
                for flag, value in (("--epochs", args.epochs), ("--limit", args.limit)):
                    if value:
                        cmd += [flag, str(value)]
                running.append((p, s, log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
            time.sleep(0.5)
            for item in list(running):
                p, s, log, proc = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                log.seek(0)
                text = log.read()
                log.close()
                if proc.returncode != 0:
                    print(f"run {p} seed {s} failed:\n{text}", flush=True)
                    continue
                rec = json.loads((Path(tmp) / f"{p}-{s}.json").read_text())
                runs.append(rec)
                atomic_write_json(out, record())  # what is done so far survives an interruption
                print(f"  {p} seed {s}: val {rec['val_acc']:.4f}, test {rec['test_acc']:.4f}, "
                      f"{rec['seconds']:.1f} s ({statistics.median(rec['epoch_seconds']):.1f} s per epoch)",
                      flush=True)
    final = record()
    atomic_write_json(out, final)
    print(f"wrote {out}")
    for p, stats in final["summary"].items():
        if p in ("fp32", "bf16"):
            print(f"{p}: val {stats['val_acc']['mean']:.4f} ± {stats['val_acc']['std']:.4f}, "
                  f"test {stats['test_acc']['mean']:.4f} ± {stats['test_acc']['std']:.4f}, "
                  f"{stats['seconds']['mean']:.1f} s per run")
    if "speedup" in final["summary"]:
        d = final["summary"]["bf16_minus_fp32"]
        print("bf16 - fp32, test accuracy per seed: " + ", ".join(f"{x:+.4f}" for x in d["test_acc"]))
        print("speed-up per seed (in parallel runs): " + ", ".join(f"{x:.2f}" for x in final["summary"]["speedup"]))
    return 0 if len(runs) == len(args.seeds) * len(args.precisions) else 1


if __name__ == "__main__":
    sys.exit(main())
