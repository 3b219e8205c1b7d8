"""Where a training step's time goes, and which settings make it faster.

Usage::

    python benchmarks/step_profile.py [--steps N] [--reps R] [--models mlp-100,cnn] [--threads T] [--out DIR]

Three measurements for each model, at batch size 32, on the device ``nnlab.train.pick_device``
picks (findings in the docstring of ``benchmarks/train_speed.py``):

1. Parts: the body of ``nnlab.train.train``'s inner loop, replicated line for line, with a
   clock read (after a device sync) between its parts: learning-rate assignment, batch
   gather, forward, loss, ``zero_grad``, backward, optimiser step and the per-step loss and
   accuracy bookkeeping. The same for the course-style loop of ``train_speed.py`` (where
   "data" is the ``DataLoader``'s next batch and the bookkeeping is two ``.item()`` calls).
   The replica's total is checked against ``nnlab.train.train`` itself.
2. Python overhead: ``torch.profiler`` over the same steps; the part of the wall time not
   covered by any recorded operator (ATen op, autograd node or optimiser call) on the main
   thread is interpreter and framework glue. The profiler's own per-op cost inflates the
   covered part, so this is an estimate. The top operators by self time are listed too.
3. Levers, each measured as alternating repetitions against the same replica: Adam's
   single-tensor (for-loop), ``foreach`` and ``fused`` implementations; channels-last memory
   format for the CNN; 1 versus 2 intra-op threads; the per-step bookkeeping as train() does
   it, a leaner form, or none; ``x[idx]`` versus ``index_select`` for the batch gather; and, for
   evaluation of the 10,000 test images, the evaluation batch size (and channels-last for
   the CNN). Each lever's first variant is the baseline its speed-ups are relative to.
"""

from __future__ import annotations

import os

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's start-up chatter off stderr

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from train_speed import (  # the benchmark folder is on sys.path when run as a script
    BATCH,
    DEFAULT_OUT,
    LR,
    build_model,
    course_loader,
    git_commit,
    machine,
    nnlab_run,
    sync,
    threads_and_device,
)

from nnlab import data
from nnlab.results import atomic_write_json
from nnlab.train import evaluate

OUT_NAME = "step_profile.json"
PARTS = ("lr", "data", "forward", "loss", "zero_grad", "backward", "optimizer", "bookkeeping")


class PartClock:
    """Accumulates the time between successive laps, syncing the device before each read."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = dict.fromkeys(PARTS, 0.0)
        self.t = 0.0

    def start(self) -> None:
        sync(self.device)
        self.t = time.perf_counter()

    def lap(self, part: str) -> None:
        sync(self.device)
        now = time.perf_counter()
        self.total[part] += now - self.t
        self.t = now

    def means(self, steps: int) -> dict[str, float]:
        return {k: v / steps for k, v in self.total.items()}


def make_optimizer(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    """Adam at the benchmark's rate: ``fused`` (nnlab's choice), ``foreach`` or ``forloop``."""
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True},
             "forloop": {"foreach": False, "fused": False}}[kind]
    return torch.optim.Adam(model.parameters(), lr=LR, **flags)


class Replica:
    """``nnlab.train.train``'s inner-loop body on a fixed permutation, with optional levers.

    Args:
        name: registered experiment whose main model is trained.
        device: where the model and data live.
        optimizer: ``fused``, ``foreach`` or ``forloop`` Adam.
        channels_last: model weights and inputs in channels-last memory format.
        bookkeeping: ``full`` keeps each step's summed loss and correct count in device tensors
            as train() does; ``lean`` keeps the mean loss and the predicted classes only (the
            sums follow at the end of an epoch); ``off`` keeps nothing.
        gather: ``index`` (``x[idx]``, as train() does) or ``index_select``.
        threads: intra-op threads while this replica runs (None: leave as is).
    """

    def __init__(self, name: str, device: torch.device, optimizer: str = "fused",
                 channels_last: bool = False, bookkeeping: str = "full", gather: str = "index",
                 threads: int | None = None):
        self.device = device
        self.model = build_model(name).to(device).train()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.model, optimizer)
        self.bookkeeping = bookkeeping
        self.gather = gather
        self.threads = threads
        x, y = data.mnist("train")
        self.x, self.y = x.to(device), y.to(device)
        self.steps_per_perm = len(x) // BATCH
        self.perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(device)
        self.losses = torch.zeros(self.steps_per_perm, device=device)
        self.correct = torch.zeros(self.steps_per_perm, device=device, dtype=torch.int64)
        self.predicted = torch.zeros(self.steps_per_perm * BATCH, device=device, dtype=torch.int64)
        self.i = 0

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        j = self.i % self.steps_per_perm
        idx = self.perm[j * BATCH:(j + 1) * BATCH]
        if self.gather == "index_select":
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
        else:
            xb, yb = self.x[idx], self.y[idx]
        if self.memory_format is torch.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def _keep(self, loss: torch.Tensor, logits: torch.Tensor, yb: torch.Tensor) -> None:
        j = self.i % self.steps_per_perm
        if self.bookkeeping == "full":
            self.losses[j] = loss.detach() * len(yb)
            self.correct[j] = (logits.detach().argmax(1) == yb).sum()
        elif self.bookkeeping == "lean":
            self.losses[j] = loss.detach()
            torch.argmax(logits.detach(), 1, out=self.predicted[j * BATCH:(j + 1) * BATCH])

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            sync(self.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                for group in self.opt.param_groups:
                    group["lr"] = LR
                xb, yb = self._batch()
                logits = self.model(xb)
                loss = F.cross_entropy(logits, yb)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self._keep(loss, logits, yb)
                self.i += 1
            sync(self.device)
            return (time.perf_counter() - t0) / steps
        finally:
            torch.set_num_threads(old)

    def parts(self, steps: int) -> dict[str, float]:
        """Mean seconds per step spent in each part (a device sync before every clock read)."""
        clock = PartClock(self.device)
        for _ in range(steps):
            clock.start()
            for group in self.opt.param_groups:
                group["lr"] = LR
            clock.lap("lr")
            xb, yb = self._batch()
            clock.lap("data")
            logits = self.model(xb)
            clock.lap("forward")
            loss = F.cross_entropy(logits, yb)
            clock.lap("loss")
            self.opt.zero_grad(set_to_none=True)
            clock.lap("zero_grad")
            loss.backward()
            clock.lap("backward")
            self.opt.step()
            clock.lap("optimizer")
            self._keep(loss, logits, yb)
            clock.lap("bookkeeping")
            self.i += 1
        return clock.means(steps)


def course_parts(name: str, device: torch.device, steps: int) -> dict[str, float]:
    """Mean seconds per step in each part of the course-style loop of ``train_speed.py``."""
    model = build_model(name).to(device).train()
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    batches = iter(course_loader())
    clock = PartClock(device)
    running_loss, correct = 0.0, 0
    for _ in range(steps):
        clock.start()
        images, labels = next(batches)
        images, labels = images.to(device), labels.to(device)
        clock.lap("data")
        opt.zero_grad()
        clock.lap("zero_grad")
        outputs = model(images)
        clock.lap("forward")
        loss = criterion(outputs, labels)
        clock.lap("loss")
        loss.backward()
        clock.lap("backward")
        opt.step()
        clock.lap("optimizer")
        running_loss += loss.item() * len(labels)
        correct += (outputs.argmax(1) == labels).sum().item()
        clock.lap("bookkeeping")
    return {k: v for k, v in clock.means(steps).items() if k != "lr"}


def python_overhead(rep: Replica, steps: int) -> dict:
    """Profile ``steps`` steps: wall time, time inside recorded operators, top operators."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if rep.device.type == "cuda" else [])
    rep.run(5)
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        rep.run(steps)
        wall = time.perf_counter() - t0
    main_thread = None
    spans = []
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CPU or ev.name.startswith("ProfilerStep"):
            continue
        if main_thread is None:
            main_thread = ev.thread
        if ev.thread == main_thread:
            spans.append((ev.time_range.start, ev.time_range.end))
    spans.sort()
    covered, end = 0.0, float("-inf")
    for s, e in spans:  # length of the union of intervals, in microseconds
        if e > end:
            covered += e - max(s, end)
            end = e
    covered_s = covered / 1e6
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {"wall_s_per_step": wall / steps, "in_ops_s_per_step": covered_s / steps,
            "python_fraction": max(0.0, 1 - covered_s / wall),
            "top_ops": [{"name": e.key, "self_cpu_us_per_step": e.self_cpu_time_total / steps,
                         "calls_per_step": e.count / steps} for e in top]}


def alternate(variants: dict[str, Callable[[int], float]], steps: int, reps: int,
              warmup: int | None = None) -> dict[str, dict]:
    """Warm each variant up (``warmup`` steps, default a tenth), then ``reps`` rounds over all
    of them in rotating order."""
    warmup = max(3, steps // 10) if warmup is None else warmup
    for fn in variants.values():
        if warmup:
            fn(warmup)
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            times[k].append(variants[k](steps))
    return {k: {"median_s_per_step": statistics.median(v), "s_per_step": v} for k, v in times.items()}


def eval_batches(name: str, device: torch.device, reps: int) -> dict[str, dict]:
    """``nnlab.train.evaluate`` on the 10,000 test images at several batch sizes (and, for a
    convolutional model, in channels-last format)."""
    model = build_model(name).to(device)
    x, y = data.mnist("test")
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())

    def timer(batch: int, channels_last: bool = False) -> Callable[[int], float]:
        m = copy.deepcopy(model).to(memory_format=torch.channels_last) if channels_last else model

        evaluate(m, x[:300], y[:300], batch=batch)  # warm-up: first-call set-up of each layout

        def run(_: int) -> float:
            sync(device)
            t0 = time.perf_counter()
            evaluate(m, x, y, batch=batch)
            sync(device)
            return time.perf_counter() - t0
        return run

    variants = {f"batch {b}": timer(b) for b in (5000, 1000, 256, 128)}
    if convolutional:
        variants["batch 128, channels-last"] = timer(128, channels_last=True)
    return alternate(variants, 1, reps, warmup=0)


def show(title: str, rows: dict[str, float], unit: float = 1e6, suffix: str = "us") -> None:
    total = sum(rows.values())
    print(title)
    for k, v in rows.items():
        print(f"  {k:12s} {v * unit:9.1f} {suffix}  {v / total:6.1%}")
    print(f"  {'total':12s} {total * unit:9.1f} {suffix}")


def profile_model(name: str, device: torch.device, steps: int, reps: int, eval_reps: int) -> dict:
    rec: dict = {}
    convolutional = any(isinstance(m, nn.Conv2d) for m in build_model(name).modules())
    scale = 1 if convolutional else 10  # an MLP step is ~100x shorter: time more of them
    n = steps * scale
    rep = Replica(name, device)
    rep.run(max(3, n // 10))
    rec["parts"] = rep.parts(n)
    show(f"{name}: nnlab.train step, parts (mean per step over {n} steps)", rec["parts"])
    rec["course_parts"] = course_parts(name, device, n)
    show(f"{name}: course-style step, parts", rec["course_parts"])

    # The replica must run at train()'s own speed, or its levers say nothing about train().
    model = build_model(name).to(device)
    x, y = data.mnist("train")
    xv, yv = data.mnist("val")
    nnlab_run(model, (x.to(device), y.to(device)), (xv[:BATCH], yv[:BATCH]), 10, device)
    check = alternate({"replica": rep.run,
                       "train()": lambda k: nnlab_run(model, (x.to(device), y.to(device)),
                                                      (xv[:BATCH], yv[:BATCH]), k, device) / k},
                      n, reps)
    rec["replica_check"] = check
    print(f"{name}: replica {check['replica']['median_s_per_step'] * 1e6:.0f} us/step, nnlab.train.train "
          f"{check['train()']['median_s_per_step'] * 1e6:.0f} us/step")

    rec["profiler"] = python_overhead(rep, n)
    p = rec["profiler"]
    print(f"{name}: under torch.profiler {p['wall_s_per_step'] * 1e6:.0f} us/step, "
          f"{p['in_ops_s_per_step'] * 1e6:.0f} us inside operators; outside (Python glue) "
          f"{p['python_fraction']:.1%}")
    for op in p["top_ops"][:8]:
        print(f"    {op['name'][:60]:60s} {op['self_cpu_us_per_step']:9.1f} us  x{op['calls_per_step']:.1f}")

    if convolutional:
        rec["profiler_channels_last"] = python_overhead(Replica(name, device, channels_last=True), n)
        print(f"{name}: channels-last, under torch.profiler "
              f"{rec['profiler_channels_last']['wall_s_per_step'] * 1e6:.0f} us/step")
        for op in rec["profiler_channels_last"]["top_ops"][:8]:
            print(f"    {op['name'][:60]:60s} {op['self_cpu_us_per_step']:9.1f} us  x{op['calls_per_step']:.1f}")

    levers: dict[str, dict] = {}
    levers["adam"] = alternate({k: Replica(name, device, optimizer=k).run
                                for k in ("fused", "foreach", "forloop")}, n, reps)
    levers["bookkeeping"] = alternate({k: Replica(name, device, bookkeeping=k).run
                                       for k in ("full", "lean", "off")}, n, reps)
    levers["gather"] = alternate({k: Replica(name, device, gather=k).run
                                  for k in ("index", "index_select")}, n, reps)
    if device.type == "cpu":
        levers["threads"] = alternate({f"{t}": Replica(name, device, threads=t).run for t in (1, 2)},
                                      n, reps)
    if convolutional:
        levers["channels_last"] = alternate({"off": Replica(name, device).run,
                                             "on": Replica(name, device, channels_last=True).run},
                                            n, reps)
    levers["eval"] = eval_batches(name, device, eval_reps)
    rec["levers"] = levers
    for lever, res in levers.items():
        base = next(iter(res.values()))["median_s_per_step"]
        cells = ", ".join(f"{k}: {v['median_s_per_step'] * 1e3:.2f} ms ({base / v['median_s_per_step']:.2f}x)"
                          for k, v in res.items())
        print(f"{name}: lever {lever}: {cells}", flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20,
                        help="steps per measurement of a CNN; an MLP runs 10x as many (default 20)")
    parser.add_argument("--reps", type=int, default=9, help="alternating repetitions per lever (default 9)")
    parser.add_argument("--eval-reps", type=int, default=3, help="repetitions of each evaluation (default 3)")
    parser.add_argument("--models", default="mlp-100,cnn", help="comma-separated experiment names")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for {OUT_NAME}")
    args = parser.parse_args(argv)
    if min(args.steps, args.reps, args.eval_reps) < 1:
        parser.error("--steps, --reps and --eval-reps must be positive")
    device = threads_and_device(parser, args)
    info = machine(device)
    print(f"device: {device}; {info['processor']}; torch {info['torch']}; {info['threads']} threads; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}", flush=True)
    record = {"benchmark": "step_profile", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "git_commit": git_commit(), "machine": info,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "models": {}}
    for name in args.models.split(","):
        record["models"][name] = profile_model(name, device, args.steps, args.reps, args.eval_reps)
    if hasattr(os, "getloadavg"):
        info["load_average_end"] = list(os.getloadavg())
    out = args.out / OUT_NAME
    atomic_write_json(out, record)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
