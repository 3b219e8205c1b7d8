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
from nnlab.train import TrainConfig, bf16_native, evaluate, pick_device, train  # noqa: E402

BATCH = 32
LR = 1e-3
# The zoo: name -> (kind, timed steps per repetition on the CPU). Each repetition of the
# slowest loop lasts a few seconds on two idle cores; CUDA runs take CUDA_STEPS.
ZOO = {"book-mlp": ("mlp", 1000), "mlp-800": ("mlp", 300), "book-cnn": ("cnn", 40),
       "classic": ("cnn", 50), "lenet5": ("cnn", 300), "resnet": ("cnn", 40)}
CUDA_STEPS = 600
BOOK = {"book-mlp": "mlp-100", "book-cnn": "cnn"}  # zoo name -> registered experiment
# Goals (ratios measured in one run): nnlab.train against the course loop, per kind, and
# against the bare tensor loop (its bookkeeping may cost at most 5%); the default layout
# (auto) against PyTorch's default and nnlab's evaluation against a plain one, never slower
# beyond the same 5% of noise.
GOAL_COURSE = {"cnn": 1.3, "mlp": 4.0}
GOAL_BARE = 0.95
GOAL_DEFAULTS = 0.95
EVAL_MODELS = ("mlp-100", "mlp-200", "mlp-1000", "cnn")  # the book's main models
EVAL_GOAL_S = 1.0
ZOO_EVAL_IMAGES = {"cpu": 2000, "cuda": 10_000}  # test images per evaluation of a zoo model
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
    return exp.variant(variant).build(exp.data)


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
              seed: int = 0, **overrides) -> float:
    """One epoch of ``nnlab.train.train`` over exactly ``steps`` batches; returns seconds.
    ``overrides`` are further :class:`~nnlab.train.TrainConfig` fields (``precision``,
    ``memory_format``)."""
    n = steps * BATCH
    subset = {"train": (train_xy[0][:n], train_xy[1][:n]), "val": val_xy}
    config = TrainConfig(epochs=1, batch_size=BATCH, optimizer="adam", lr=LR, **overrides)
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


def zoo_model(name: str, seed: int = 0) -> nn.Module:
    """A zoo model, freshly initialised with ``seed``: the book's two (their reported
    variants) or one written out in ``benchmarks/zoo.py``."""
    import zoo  # benchmarks/ is on sys.path when run as a script

    if name in BOOK:
        return build_model(BOOK[name], seed)
    torch.manual_seed(seed)
    return {"classic": zoo.Classic, "lenet5": zoo.lenet5, "resnet": zoo.SmallResNet, "mlp-800": zoo.mlp_800}[name]()


def bare_run(model: nn.Module, train_xy: tuple[torch.Tensor, torch.Tensor], steps: int,
             device: torch.device, seed: int = 0) -> float:
    """``steps`` batches of the leanest loop a user can write: the tensors already on the
    device, a seeded permutation sliced into batches, ``torch.optim.Adam`` with PyTorch's
    defaults, the model in its default layout, and no bookkeeping at all."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = train_xy
    perm = torch.randperm(steps * BATCH, generator=torch.Generator().manual_seed(seed)).to(device)
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        idx = perm[i * BATCH:(i + 1) * BATCH]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - t0


def plain_eval(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Seconds of the evaluation a course writes (the test pass of PyTorch's MNIST example):
    default layout, batches of 1000, the summed loss and the correct count read per batch."""
    device = next(model.parameters()).device
    model.eval()
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        loss, correct = 0.0, 0
        for start in range(0, len(images), batch):
            x, y = images[start:start + batch].to(device), labels[start:start + batch].to(device)
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += out.argmax(1).eq(y).sum().item()
    sync(device)
    return time.perf_counter() - t0


def nnlab_eval(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    device = next(model.parameters()).device
    sync(device)
    t0 = time.perf_counter()
    evaluate(model, images, labels)
    sync(device)
    return time.perf_counter() - t0


def profile_top(model: nn.Module, train_xy, device: torch.device, steps: int = 5, top: int = 5) -> list[dict]:
    """The operators that take most of a training step in nnlab's layout (self time, share
    of the total): the explanation of a FLOP rate far below the convolution rate."""
    from torch.profiler import ProfilerActivity, profile

    from nnlab.train import fast_memory_format, make_optimizer

    m = copy.deepcopy(model).to(device, memory_format=fast_memory_format(model, device)).train()
    opt = make_optimizer(m, TrainConfig(optimizer="adam", lr=LR), device)
    x, y = train_xy
    def step(i: int) -> None:
        idx = torch.arange(i * BATCH, (i + 1) * BATCH, device=device)
        loss = F.cross_entropy(m(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    step(0)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(steps):
            step(i)
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events) or 1
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"op": e.key, "share": getattr(e, key) / total, "calls_per_step": e.count / steps}
            for e in events[:top]]


def bench_model(name: str, steps: int, reps: int, warmup: int, device: torch.device, loader,
                train_xy, val_xy, test_xy, bf16: bool) -> dict:
    """Warm up, then ``reps`` repetitions of every loop for one zoo model, in an order that
    rotates every repetition so that a shared machine's load falls on all alike."""
    kind = ZOO[name][0]
    base = zoo_model(name).to(device)
    loops = {"course": lambda m, n, rep: course_run(m, loader, n, device),
             "bare": lambda m, n, rep: bare_run(m, train_xy, n, device, seed=rep),
             "nnlab": lambda m, n, rep: nnlab_run(m, train_xy, val_xy, n, device, seed=rep)}
    if kind == "cnn":  # the layout rule against PyTorch's default layout
        loops["nnlab_default_layout"] = lambda m, n, rep: nnlab_run(m, train_xy, val_xy, n, device, seed=rep,
                                                                    memory_format="contiguous")
    if bf16:
        loops["nnlab_bf16"] = lambda m, n, rep: nnlab_run(m, train_xy, val_xy, n, device, seed=rep,
                                                          precision="bf16")
    model_of = {loop: copy.deepcopy(base) for loop in loops}
    for loop, run in loops.items():
        run(model_of[loop], warmup, 0)
    rec: dict = {"kind": kind, "steps": steps, "parameters": models.count_parameters(base),
                 "seconds": {loop: [] for loop in loops}}
    names = list(loops)
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for loop in order:
            rec["seconds"][loop].append(loops[loop](model_of[loop], steps, rep))
        print(f"  {name} rep {rep + 1}/{reps}: " + ", ".join(
            f"{loop} {steps * BATCH / rec['seconds'][loop][-1]:,.0f}" for loop in names) + " samples/s", flush=True)
    rec["samples_per_s"] = {loop: steps * BATCH / statistics.median(t) for loop, t in rec["seconds"].items()}
    sps = rec["samples_per_s"]
    rec["nnlab_over_course"] = sps["nnlab"] / sps["course"]
    rec["nnlab_over_bare"] = sps["nnlab"] / sps["bare"]
    if "nnlab_default_layout" in sps:
        rec["layout_over_default"] = sps["nnlab"] / sps["nnlab_default_layout"]
    if "nnlab_bf16" in sps:
        rec["bf16_speedup"] = sps["nnlab_bf16"] / sps["nnlab"]
    rec["flops_per_step"] = step_flops(base, device)
    rec["nnlab_gflops"] = rec["flops_per_step"] * sps["nnlab"] / BATCH / 1e9
    # evaluation: nnlab's choice of layout and chunk against the plain course evaluation
    model = model_of["nnlab"]
    ev_n, ev_d = [], []
    nnlab_eval(model, *test_xy)  # warm-up
    plain_eval(model, *test_xy)
    for rep in range(max(3, reps)):
        pair = ((ev_n, nnlab_eval), (ev_d, plain_eval))
        for times, fn in (pair if rep % 2 == 0 else pair[::-1]):
            times.append(fn(model, *test_xy))
    rec["eval_seconds"] = {"nnlab": statistics.median(ev_n), "plain": statistics.median(ev_d)}
    rec["eval_over_plain"] = rec["eval_seconds"]["plain"] / rec["eval_seconds"]["nnlab"]
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


def goal_lines(results: dict, conv_rate: float) -> list[tuple[str, bool]]:
    """Each goal of the zoo, as (sentence, met)."""
    out = []
    for name, r in results.items():
        goal = GOAL_COURSE[r["kind"]]
        out.append((f"{name}: nnlab/course {r['nnlab_over_course']:.2f} (goal >= {goal:g})",
                    r["nnlab_over_course"] >= goal))
        out.append((f"{name}: nnlab/bare {r['nnlab_over_bare']:.2f} (goal >= {GOAL_BARE:g})",
                    r["nnlab_over_bare"] >= GOAL_BARE))
        if "layout_over_default" in r:
            out.append((f"{name}: channels-last/default layout {r['layout_over_default']:.2f} "
                        f"(goal >= {GOAL_DEFAULTS:g})", r["layout_over_default"] >= GOAL_DEFAULTS))
        out.append((f"{name}: evaluation, nnlab/plain {r['eval_over_plain']:.2f} (goal >= {GOAL_DEFAULTS:g})",
                    r["eval_over_plain"] >= GOAL_DEFAULTS))
    return out


def table(results: dict, conv_rate: float, bf16: bool) -> str:
    head = ["model", "params", "GFLOP/step", "course", "bare", "nnlab", "nnlab/course", "nnlab/bare",
            "CL/default", "eval", "GFLOP/s", "of conv"] + (["bf16"] if bf16 else [])
    rows = [head]
    for name, r in results.items():
        sps = r["samples_per_s"]
        rows.append([name, f"{r['parameters']:,}", f"{r['flops_per_step'] / 1e9:.3f}",
                     f"{sps['course']:,.0f}", f"{sps['bare']:,.0f}", f"{sps['nnlab']:,.0f}",
                     f"{r['nnlab_over_course']:.2f}", f"{r['nnlab_over_bare']:.2f}",
                     f"{r['layout_over_default']:.2f}" if "layout_over_default" in r else "-",
                     f"{r['eval_over_plain']:.2f}", f"{r['nnlab_gflops']:.0f}",
                     f"{r['nnlab_gflops'] / conv_rate:.2f}"]
                    + ([f"{r['bf16_speedup']:.2f}"] if bf16 else []))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def markdown_table(record: dict) -> str:
    """The zoo table of a record as the README quotes it (a test holds the two equal)."""
    bf16 = any("bf16_speedup" in r for r in record["models"].values())
    head = ["model", "parameters", "GFLOP per step", "course", "bare", "`nnlab.train`", "nnlab/course",
            "nnlab/bare", "channels-last/default", "achieved GFLOP/s (of conv rate)"] + (["bf16/fp32"] if bf16 else [])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [n for n in ZOO if n in record["models"]]:
        r, conv = record["models"][name], record["conv_gflops"]
        sps = r["samples_per_s"]
        cells = [name, f"{r['parameters']:,}", f"{r['flops_per_step'] / 1e9:.3f}", f"{sps['course']:,.0f}",
                 f"{sps['bare']:,.0f}", f"{sps['nnlab']:,.0f}", f"**{r['nnlab_over_course']:.2f}×**",
                 f"{r['nnlab_over_bare']:.2f}",
                 f"{r['layout_over_default']:.2f}" if "layout_over_default" in r else "–",
                 f"{r['nnlab_gflops']:,.0f} ({r['nnlab_gflops'] / conv:.2f})"]
        rows.append("| " + " | ".join(cells + ([f"{r['bf16_speedup']:.2f}"] if bf16 else [])) + " |")
    rows += ["", f"Machine rates in the same run: fp32 matmul {record['matmul_gflops']:,.0f} GFLOP/s, "
                 f"3×3 convolution {record['conv_gflops']:,.0f} GFLOP/s."]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(ZOO), default=list(ZOO),
                        help="zoo models to time (default: all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed batches per repetition for every model (default: per model, "
                             + ", ".join(f"{k} {v[1]}" for k, v in ZOO.items()) + f"; {CUDA_STEPS} on CUDA)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every loop (default 5)")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up batches per loop (default 10)")
    parser.add_argument("--eval-reps", type=int, default=3, help="timed evaluations per book model (default 3)")
    parser.add_argument("--eval-images", type=int, default=10_000,
                        help="test images per evaluation of a book model (default: all 10,000; a zoo "
                             "model's evaluation takes at most this many)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 loop even where it is native")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for {OUT_NAME} (default benchmarks/out)")
    args = parser.parse_args(argv)
    if min(1 if args.steps is None else args.steps, args.reps, args.warmup, args.eval_reps,
           args.eval_images) < 1:
        parser.error("--steps, --reps, --warmup, --eval-reps and --eval-images must be positive")
    device = threads_and_device(parser, args)
    steps = {name: args.steps or (CUDA_STEPS if device.type == "cuda" else ZOO[name][1]) for name in args.models}
    if max(*steps.values(), args.warmup, 1) * BATCH > len(data.mnist("train")[0]):
        parser.error("--steps or --warmup needs more than the training split's images")
    bf16 = bf16_native(device) and not args.no_bf16

    info = machine(device)
    info["bf16_native"] = bf16_native(device)
    print(f"device: {device}" + (f" ({info['gpu']})" if "gpu" in info else "")
          + f"; {info['processor']}; torch {info['torch']}; {info['threads']} threads", flush=True)
    print(f"timing {', '.join(f'{k}: {v} steps' for k, v in steps.items())} of batch {BATCH}, "
          f"{args.reps} rotating repetitions; bf16 "
          + ("measured" if bf16 else "not measured (no native bfloat16 here)" if not info["bf16_native"]
             else "skipped"), flush=True)

    loader = course_loader()
    x, y = data.mnist("train")
    train_xy = (x.to(device), y.to(device))  # nnlab keeps the data on the device: move it once
    xv, yv = data.mnist("val")
    val_xy = (xv[:BATCH], yv[:BATCH])
    xt, yt = data.mnist("test")
    n_zoo_eval = min(args.eval_images, ZOO_EVAL_IMAGES.get(device.type, ZOO_EVAL_IMAGES["cpu"]))
    test_xy = (xt[:n_zoo_eval].to(device), yt[:n_zoo_eval].to(device))

    results: dict = {}
    rates: dict = {"matmul_gflops": [], "conv_gflops": []}
    for name in args.models:
        results[name] = bench_model(name, steps[name], args.reps, args.warmup, device, loader,
                                    train_xy, val_xy, test_xy, bf16)
        rates["matmul_gflops"].append(matmul_gflops(device))
        rates["conv_gflops"].append(conv_gflops(device))
    matmul_rate = statistics.median(rates["matmul_gflops"])
    conv_rate = statistics.median(rates["conv_gflops"])
    for name, r in results.items():
        r["fraction_of_matmul"] = r["nnlab_gflops"] / matmul_rate
        r["fraction_of_conv"] = r["nnlab_gflops"] / conv_rate
        if r["kind"] == "cnn" and r["fraction_of_conv"] < 0.5:
            r["profile"] = profile_top(zoo_model(name), train_xy, device)

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
    goals = goal_lines(results, conv_rate)
    record = {"benchmark": "train_speed", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "git_commit": git_commit(), "args": {k: str(v) if isinstance(v, Path) else v
                                                   for k, v in vars(args).items()},
              "steps": steps, "batch_size": BATCH, "lr": LR, "machine": info,
              "matmul_gflops": matmul_rate, "conv_gflops": conv_rate, "rates": rates, "bf16": bf16,
              "models": results, "goals": [{"goal": g, "met": met} for g, met in goals],
              "eval_images": n_eval, "eval_seconds": eval_s, "eval_goal_s": EVAL_GOAL_S}
    out = args.out / OUT_NAME
    atomic_write_json(out, record)
    print(f"wrote {out}")

    print(f"machine rates: fp32 matmul {matmul_rate:.0f} GFLOP/s, 3x3 convolution {conv_rate:.0f} GFLOP/s")
    for name, r in results.items():
        if "profile" in r:
            print(f"{name}: {r['nnlab_gflops']:.0f} GFLOP/s, {r['fraction_of_conv']:.2f} of the convolution "
                  "rate; the step's time goes to " + ", ".join(
                      f"{p['op']} {p['share']:.0%}" for p in r["profile"]))
    for goal, met in goals:
        print(("meets  " if met else "MISSES ") + goal)
    print(table(results, conv_rate, bf16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
