"""Training speed: a course-style loop against ``nnlab.train``, side by side in one run.

Usage::

    python benchmarks/train_speed.py [--steps N] [--reps R] [--out DIR]

For the book's 100-hidden-unit MLP (``mlp-100``) and its CNN (``cnn``), at batch size 32:

(a) the loop a reader of a deep-learning course writes: ``torchvision.datasets.MNIST`` with
    ``ToTensor`` and ``Normalize``, a shuffling ``DataLoader``, plain ``torch.optim.Adam``,
    cross-entropy, and the epoch's loss and accuracy summed with ``.item()`` on every step
    (what the problem set's per-epoch log needs);
(b) ``nnlab.train.train`` itself: one epoch of a training subset of exactly N batches, with
    the same spec, Adam at the same rate, batch 32 and a one-batch validation set.

Each model gets a warm-up of both loops, then R repetitions of (a) and (b), alternating and
swapping their order every repetition, so that the load of a shared machine falls on both
alike; the medians and their ratio are printed last. For the CNN the run also counts the
floating-point operations of one training step (forward and backward, with
``torch.utils.flop_counter.FlopCounterMode``) and measures the fp32 matrix-multiply rate of
the same device and thread count, interleaved with the repetitions, to report the fraction
of that rate a training step achieves ("achieved/peak"). Because the BLAS behind ``torch.mm``
is not the fastest fp32 kernel on every CPU, it also measures the CNN's commonest
convolution on its own and reports achieved/best-kernel beside it. Finally it times
``nnlab.train.evaluate`` on the 10,000 test images for each of the book's main models
(goal: under 1 s). The record goes to ``--out`` as JSON, written atomically. On CUDA
(picked by ``nnlab.train.pick_device``) the same code runs unchanged and synchronises the
device before reading a clock. ``--threads N`` sets torch's intra-op threads first.

Findings. Measured with ``benchmarks/step_profile.py --threads 1`` (20 CNN steps or 200
MLP steps per measurement, 9 alternating repetitions) on a 2-core AMD EPYC (Zen 5,
AVX-512) KVM guest, torch 2.14.1 (CPU), while 4-6 other training processes shared the two
cores (load average 5-6): absolute times move by 20% or more from one minute to the next;
the ratios come from the alternating repetitions. A step is one
batch of 32 through a line-for-line replica of ``nnlab.train``'s loop body, whose speed
matched ``train()`` itself (MLP 399 vs 404 us per step, CNN 41.4 vs 42.1 ms).

* Threads decide everything on a shared machine. torch starts one OpenMP thread per core;
  when other processes keep the cores busy, each parallel region's threads spin at a
  barrier waiting for a partner the OS has descheduled, and a step gets 25-300x slower
  than with one thread (CNN 39 ms -> 1034 ms, MLP 0.44 ms -> 125 ms per step).
  ``OMP_WAIT_POLICY=PASSIVE`` removes the spinning (the same lever under it: CNN 43 ms with
  1 thread, 57 ms with 2), but under this load one thread per process is still fastest. On an idle machine two
  threads are the faster choice for the CNN; that could not be measured here.
* MLP 784-100-10, 1 thread: 0.40 ms per nnlab step (about 80k samples/s): backward 34%,
  forward 20%, Adam 18%, batch gather 13%, per-step loss/accuracy bookkeeping 5%, the rest
  (zero_grad, loss, learning-rate assignment) 10%. The arithmetic is tiny (10 MFLOP per
  step), so the step is dispatch-bound: under ``torch.profiler`` 24% of the wall time is
  outside any operator (Python and module glue) and most of the rest is the fixed cost of
  32 top-level operator calls (143 ATen calls counting nested ones). The course-style step takes 2.1 ms, 70% of it in the
  ``DataLoader`` (per-image PIL -> ``ToTensor`` -> ``Normalize`` and collation, 1.5 ms per
  batch): that, not the model, is why nnlab's loop is several times faster for the MLP.
* CNN (150,698 parameters, 4.19 GFLOP per training step), 1 thread: 41 ms per step (about
  780 samples/s): forward 50%, backward 48%, Adam 1.5%, data and bookkeeping under 1%;
  Python glue 3.8%. Convolutions take 56% of the profiled step and run at about
  170 GFLOP/s; the rest is memory-bound layers: max pooling 4.3 ms, batch norm 3.7 ms
  forward and 3.0 ms backward, dropout's random mask 1.8 ms, ReLU 1.8 ms. The course loop
  is only 5% slower (DataLoader 2.4 ms, for-loop Adam 1.1 ms per step). One oneDNN 3x3
  convolution runs at about 210 GFLOP/s on one core while ``torch.mm`` (MKL) reaches 95:
  on this CPU a CNN step can exceed the "matmul peak", hence the second ratio.
* Levers (median of 9, relative to the first option):
  Adam fused / foreach / for-loop: MLP 0.40 / 0.54 / 0.50 ms (fused 1.25-1.35x faster);
  CNN 39.9 / 40.5 / 40.2 ms (no difference: the optimiser is 1.5% of the step).
  Channels-last memory format (model and inputs), CNN: 39.6 -> 30.1 ms, 1.32x, faster in
  9 of 9 repetitions; max pooling drops from 4.3 to 0.5 ms, batch norm forward from 3.7
  to 1.4 ms, convolutions from 25.2 to 21.3 ms. ``nnlab.train`` now trains and evaluates
  every convolutional model in channels-last format (``nnlab.train.fast_memory_format``);
  the course-style loop keeps PyTorch's default layout, as a reader's code would.
  Batch gather ``x[idx]`` vs ``index_select``: MLP 0.40 -> 0.37 ms (1.08x); CNN 1.02x.
  Bookkeeping as train() does it / lean (mean loss and argmax only) / none: MLP 0.41 /
  0.40 / 0.38 ms; CNN within noise.
* Evaluation of the 10,000 test images (``nnlab.train.evaluate``), 1 thread: the MLP takes
  23 ms at any batch size from 256 to 5000. The CNN takes 12.7 s at the default batch of
  5000, 10.8 s at 1000, 5.8 s at 256, 4.3 s at 128 and 2.8 s at 128 in channels-last
  format (4.5x): a batch of 5000 makes 500 MB activations that miss every cache, while
  128 images' activations (13 MB) stay in the 32 MB L3. On the idle machine with 2 threads,
  channels-last, a 32-filter CNN (44 MFLOP per image forward) took 1.1-1.6 s at 16-64 images
  per batch and 2.3-2.9 s at 100-128 (contiguous layout: 2.0 s at 32, 4.3 s at 100), so
  ``evaluate`` uses 64-image batches for convolutional models. Folding batch norm into the convolutions
  and scripting the model for inference gained only 10-15% more, and was left out. The
  cost scales with the forward FLOPs: a 48-filter CNN (98 MFLOP per image) needs 2.4 s.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "NNLAB_DATA" not in os.environ and (ROOT.parent / "shared" / "data" / "MNIST" / "raw").is_dir():
    os.environ["NNLAB_DATA"] = str(ROOT.parent / "shared" / "data")  # as the Makefile does

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from nnlab import data, experiments, models  # noqa: E402
from nnlab.results import atomic_write_json  # noqa: E402
from nnlab.train import TrainConfig, evaluate, pick_device, train  # noqa: E402

BATCH = 32
LR = 1e-3
BENCH_MODELS = ("mlp-100", "cnn")  # (a) vs (b)
DEFAULT_STEPS = {"mlp-100": 1000, "cnn": 100}  # a few seconds per repetition on two idle cores
EVAL_MODELS = ("mlp-100", "mlp-200", "mlp-1000", "cnn")  # the book's main models
EVAL_GOAL_S = 1.0
DEFAULT_OUT = ROOT / "benchmarks" / "out"
OUT_NAME = "train_speed.json"


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a clock read afterwards means what it says."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def build_model(name: str, seed: int = 0) -> nn.Module:
    """The reported variant of a registered experiment (chosen on validation when its results
    are stored, else the first), freshly initialised with ``seed``."""
    from nnlab import results as store

    exp = experiments.get(name)
    variant = store.chosen_variant(name) if store.status(name).state == "ok" else exp.variants[0].name
    torch.manual_seed(seed)
    return models.build(exp.variant(variant).spec)


def course_loader(batch_size: int = BATCH):
    """The data pipeline of a typical course notebook (torchvision dataset + DataLoader)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(root=str(data.data_root()), train=True, download=False, transform=tf)
    return DataLoader(ds, batch_size=batch_size, shuffle=True)


def course_run(model: nn.Module, loader, steps: int, device: torch.device) -> float:
    """``steps`` batches of the course-style loop (a fresh epoch iterator); returns seconds."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    sync(device)
    t0 = time.perf_counter()
    running_loss, correct = 0.0, 0
    for images, labels in itertools.islice(loader, steps):
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * len(labels)
        correct += (outputs.argmax(1) == labels).sum().item()
    sync(device)
    return time.perf_counter() - t0


def nnlab_run(model: nn.Module, train_xy: tuple[torch.Tensor, torch.Tensor],
              val_xy: tuple[torch.Tensor, torch.Tensor], steps: int, device: torch.device,
              seed: int = 0) -> float:
    """One epoch of ``nnlab.train.train`` over exactly ``steps`` batches; returns seconds."""
    n = steps * BATCH
    subset = {"train": (train_xy[0][:n], train_xy[1][:n]), "val": val_xy}
    config = TrainConfig(epochs=1, batch_size=BATCH, optimizer="adam", lr=LR)
    sync(device)
    t0 = time.perf_counter()
    train(model, config, seed=seed, data=subset, device=device, progress=False)
    sync(device)
    return time.perf_counter() - t0


def step_flops(model: nn.Module, device: torch.device) -> int:
    """Floating-point operations of one training step at batch 32 (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).to(device).train()
    x = torch.randn(BATCH, *data.IMAGE_SHAPE, device=device)
    y = torch.randint(0, data.NUM_CLASSES, (BATCH,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(m(x), y).backward()
    return int(counter.get_total_flops())


def _rate(run, flops: float, device: torch.device, seconds: float) -> float:
    """GFLOP/s of ``run()`` (``flops`` each call), repeated for at least ``seconds``."""
    run()  # warm-up (and the library's first-call set-up)
    sync(device)
    count, t0 = 0, time.perf_counter()
    while True:
        run()
        count += 1
        sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and count >= 2:
            return flops * count / elapsed / 1e9


def matmul_gflops(device: torch.device, seconds: float = 0.3) -> float:
    """fp32 matrix-multiply rate (GFLOP/s, ``torch.mm``) with the current thread count."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    return _rate(lambda: torch.mm(a, b, out=c), 2 * n**3, device, seconds)


def conv_gflops(device: torch.device, seconds: float = 0.3) -> float:
    """fp32 rate (GFLOP/s) of the CNN's commonest convolution on its own: 64 to 64 channels,
    3x3, padding 1, 14x14 maps, batch 32, forward. On CPUs where the BLAS behind ``torch.mm``
    does not use the widest vector units (MKL on AMD) this kernel is the faster of the two."""
    x = torch.randn(BATCH, 64, 14, 14, device=device)
    w = torch.randn(64, 64, 3, 3, device=device)
    return _rate(lambda: F.conv2d(x, w, padding=1), 2 * BATCH * 14 * 14 * 64 * 64 * 9, device, seconds)


def time_eval(name: str, device: torch.device, reps: int, images: int = 10_000) -> float:
    """Median seconds of ``nnlab.train.evaluate`` on the first ``images`` test images."""
    model = build_model(name).to(device)
    x, y = (t[:images] for t in data.mnist("test"))
    evaluate(model, x[:200], y[:200])  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        evaluate(model, x, y)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


def machine(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = list(os.getloadavg())
    return info


def bench_model(name: str, steps: int, reps: int, warmup: int, device: torch.device,
                loader, train_xy, val_xy, measure_peak: bool) -> dict:
    """Warm up, then ``reps`` alternating repetitions of (a) and (b) for one model."""
    model_a = build_model(name).to(device)
    model_b = copy.deepcopy(model_a)
    course_run(model_a, loader, warmup, device)
    nnlab_run(model_b, train_xy, val_xy, warmup, device)
    rec: dict = {"course_s": [], "nnlab_s": [], "matmul_gflops": [], "conv_gflops": []}
    for rep in range(reps):
        order = ("a", "b") if rep % 2 == 0 else ("b", "a")
        for which in order:
            if which == "a":
                rec["course_s"].append(course_run(model_a, loader, steps, device))
            else:
                rec["nnlab_s"].append(nnlab_run(model_b, train_xy, val_xy, steps, device, seed=rep))
        if measure_peak:
            rec["matmul_gflops"].append(matmul_gflops(device))
            rec["conv_gflops"].append(conv_gflops(device))
        a_rate = steps * BATCH / rec["course_s"][-1]
        b_rate = steps * BATCH / rec["nnlab_s"][-1]
        print(f"  {name} rep {rep + 1}/{reps}: (a) {a_rate:9,.0f}  (b) {b_rate:9,.0f} samples/s"
              + (f"  matmul {rec['matmul_gflops'][-1]:6.1f}, conv {rec['conv_gflops'][-1]:6.1f} GFLOP/s"
                 if measure_peak else ""), flush=True)
    samples = steps * BATCH
    rec["course_samples_per_s"] = samples / statistics.median(rec["course_s"])
    rec["nnlab_samples_per_s"] = samples / statistics.median(rec["nnlab_s"])
    rec["ratio_b_over_a"] = rec["nnlab_samples_per_s"] / rec["course_samples_per_s"]
    rec["parameters"] = models.count_parameters(model_a)
    if measure_peak:
        flops = step_flops(model_a, device)
        rec["flops_per_step"] = flops
        rec["peak_gflops"] = statistics.median(rec["matmul_gflops"])  # the matmul rate
        rec["best_kernel_gflops"] = max(rec["peak_gflops"], statistics.median(rec["conv_gflops"]))
        for loop in ("nnlab", "course"):
            achieved = flops * rec[f"{loop}_samples_per_s"] / BATCH / 1e9
            rec[f"{loop}_gflops"] = achieved
            rec[f"{loop}_fraction_of_peak"] = achieved / rec["peak_gflops"]
            rec[f"{loop}_fraction_of_best_kernel"] = achieved / rec["best_kernel_gflops"]
    return rec


def threads_and_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and resolve ``--device``; bad values end in ``parser.error``."""
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    try:
        return pick_device(args.device)
    except ValueError as exc:  # ConfigError: an unknown or unavailable device
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed batches per repetition for every model (default: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions (default 5)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up batches per loop (default 20)")
    parser.add_argument("--eval-reps", type=int, default=3, help="timed evaluations per model (default 3)")
    parser.add_argument("--eval-images", type=int, default=10_000,
                        help="test images per evaluation (default: all 10,000; fewer for smoke tests)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for {OUT_NAME} (default benchmarks/out)")
    args = parser.parse_args(argv)
    if min(1 if args.steps is None else args.steps, args.reps, args.warmup, args.eval_reps,
           args.eval_images) < 1:
        parser.error("--steps, --reps, --warmup, --eval-reps and --eval-images must be positive")
    steps = {name: args.steps or DEFAULT_STEPS[name] for name in BENCH_MODELS}
    device = threads_and_device(parser, args)
    if max(*steps.values(), args.warmup) * BATCH > len(data.mnist("train")[0]):
        parser.error("--steps or --warmup needs more than the training split's images")

    info = machine(device)
    print(f"device: {device}" + (f" ({info['gpu']})" if "gpu" in info else "")
          + f"; {info['processor']}; torch {info['torch']}; {info['threads']} threads", flush=True)
    print(f"timing {', '.join(f'{k}: {v} steps' for k, v in steps.items())} of batch {BATCH}, "
          f"{args.reps} alternating repetitions", flush=True)

    loader = course_loader()
    x, y = data.mnist("train")
    train_xy = (x.to(device), y.to(device))  # nnlab keeps the data on the device: move it once
    xv, yv = data.mnist("val")
    val_xy = (xv[:BATCH], yv[:BATCH])

    results: dict = {}
    for name in BENCH_MODELS:
        results[name] = bench_model(name, steps[name], args.reps, args.warmup, device, loader,
                                    train_xy, val_xy, measure_peak=(name == "cnn"))

    n_eval = min(args.eval_images, len(data.mnist("test")[0]))
    print(f"evaluation of {n_eval:,} test images (nnlab.train.evaluate):", flush=True)
    eval_s = {}
    for name in EVAL_MODELS:
        eval_s[name] = time_eval(name, device, args.eval_reps, n_eval)
        verdict = "meets" if eval_s[name] < EVAL_GOAL_S else "misses"
        print(f"  {name:9s} {eval_s[name]:7.3f} s"
              + (f"  ({verdict} the {EVAL_GOAL_S:g} s goal)" if n_eval == 10_000 else ""), flush=True)

    if hasattr(os, "getloadavg"):
        info["load_average_end"] = list(os.getloadavg())
    record = {"benchmark": "train_speed", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "git_commit": git_commit(), "args": {k: str(v) if isinstance(v, Path) else v
                                                   for k, v in vars(args).items()},
              "steps": steps, "batch_size": BATCH, "lr": LR, "machine": info, "models": results,
              "eval_images": n_eval, "eval_seconds": eval_s, "eval_goal_s": EVAL_GOAL_S}
    out = args.out / OUT_NAME
    atomic_write_json(out, record)
    print(f"wrote {out}")

    cnn = results["cnn"]
    print(f"cnn: {cnn['flops_per_step'] / 1e9:.3f} GFLOP per training step (forward + backward); "
          f"nnlab.train achieves {cnn['nnlab_gflops']:.1f} GFLOP/s")
    print(f"cnn: achieved/peak = {cnn['nnlab_fraction_of_peak']:.2f} of the fp32 matmul rate "
          f"({cnn['peak_gflops']:.1f} GFLOP/s); {cnn['nnlab_fraction_of_best_kernel']:.2f} of the fastest "
          f"kernel measured ({cnn['best_kernel_gflops']:.1f} GFLOP/s)")
    for name in BENCH_MODELS:
        r = results[name]
        print(f"{name}: median samples/s (a) course-style {r['course_samples_per_s']:,.0f}, "
              f"(b) nnlab.train {r['nnlab_samples_per_s']:,.0f}; b/a = {r['ratio_b_over_a']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
