"""Whole process: PyTorch's MNIST example against ``nnlab.train`` on the same network.

Usage::

    python benchmarks/classic_example.py [--reps R] [--out DIR]

PyTorch's own MNIST example (``pytorch/examples``, ``mnist/main.py``) trains the network of
``benchmarks/zoo.py``'s ``Classic`` with ``torchvision.datasets.MNIST`` (``ToTensor``,
``Normalize((0.1307,), (0.3081,))``), a ``DataLoader`` of batch 64 (shuffled only on an
accelerator), Adadelta at learning rate 1.0 with a ``StepLR`` decay of 0.7 per epoch, the
negative log-likelihood of its log-softmax output, a log line every 10 batches, and a pass
over the 10,000 test images in batches of 1000 after each epoch. Its published command
line for one epoch on the CPU is ``python main.py --epochs 1 --no-accel`` (``--no-cuda``
 in its older versions).

``--loop example`` re-creates that script's work for one epoch (written here, not copied:
the same data pipeline, optimiser, loss, logging and test pass). ``--loop nnlab`` trains
the same network with ``nnlab.train``: one epoch over the same 60,000 images at batch 64,
Adadelta at 1.0, and the 10,000 test images evaluated after the epoch (given as the
validation split). Each is timed as a whole process (interpreter start, imports, reading
MNIST, training, testing), ``--reps`` times, alternating; the medians and their ratio are
printed last and the record is written to ``--out``/classic_example.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "NNLAB_DATA" not in os.environ and (ROOT.parent / "shared" / "data" / "MNIST" / "raw").is_dir():
    os.environ["NNLAB_DATA"] = str(ROOT.parent / "shared" / "data")  # as the Makefile does

DEFAULT_OUT = ROOT / "benchmarks" / "out"
OUT_NAME = "classic_example.json"
BATCH, TEST_BATCH, LOG_INTERVAL = 64, 1000, 10


def example_loop(limit: int | None) -> dict:
    """One epoch as PyTorch's MNIST example runs it on the CPU."""
    import torch
    import torch.nn.functional as F
    from torch.optim.lr_scheduler import StepLR
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms
    from zoo import Classic

    from nnlab import data

    torch.manual_seed(1)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    root = str(data.data_root())
    train_set = datasets.MNIST(root, train=True, download=False, transform=tf)
    test_set = datasets.MNIST(root, train=False, download=False, transform=tf)
    if limit:
        train_set, test_set = Subset(train_set, range(limit)), Subset(test_set, range(limit))
    train_loader = DataLoader(train_set, batch_size=BATCH)
    test_loader = DataLoader(test_set, batch_size=TEST_BATCH)
    model = Classic()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    model.train()
    for batch_idx, (x, y) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if batch_idx % LOG_INTERVAL == 0:
            print(f"Train Epoch: 1 [{batch_idx * len(x)}/{len(train_loader.dataset)}]\tLoss: {loss.item():.6f}")
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in test_loader:
            out = model(x)
            test_loss += F.nll_loss(out, y, reduction="sum").item()
            correct += out.argmax(dim=1).eq(y).sum().item()
    scheduler.step()
    n = len(test_loader.dataset)
    print(f"Test set: Average loss: {test_loss / n:.4f}, Accuracy: {correct}/{n}")
    return {"test_acc": correct / n}


def nnlab_loop(limit: int | None) -> dict:
    """The same epoch with ``nnlab.train``."""
    import torch
    from zoo import Classic

    from nnlab import data
    from nnlab.train import TrainConfig, train

    torch.manual_seed(1)
    (xt, yt), (xv, yv), (xs, ys) = (data.mnist(s) for s in ("train", "val", "test"))
    x, y = torch.cat([xt, xv]), torch.cat([yt, yv])  # all 60,000 training images, as the example
    if limit:
        x, y, xs, ys = x[:limit], y[:limit], xs[:limit], ys[:limit]
    config = TrainConfig(epochs=1, batch_size=BATCH, optimizer="adadelta", lr=1.0)
    res = train(Classic(), config, seed=1, data={"train": (x, y), "val": (xs, ys)}, device="cpu")
    print(f"Test set: accuracy {res.val_acc:.4f}")
    return {"test_acc": res.val_acc}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2, help="whole-process runs of each (default 2)")
    parser.add_argument("--limit", type=int, default=None, help="images per split (smoke tests only)")
    parser.add_argument("--loop", choices=["example", "nnlab"], help="run one loop in this process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for {OUT_NAME}")
    args = parser.parse_args(argv)
    if args.reps < 1 or (args.limit is not None and args.limit < BATCH):
        parser.error(f"--reps must be positive and --limit at least {BATCH}")
    if args.loop:
        rec = (example_loop if args.loop == "example" else nnlab_loop)(args.limit)
        print("RESULT " + json.dumps(rec))
        return 0

    import torch
    from train_speed import git_commit, machine  # benchmarks/ is on sys.path

    from nnlab.results import atomic_write_json

    seconds: dict[str, list[float]] = {"example": [], "nnlab": []}
    accuracy: dict[str, list[float]] = {"example": [], "nnlab": []}
    for rep in range(args.reps):
        for loop in (("example", "nnlab") if rep % 2 == 0 else ("nnlab", "example")):
            cmd = [sys.executable, __file__, "--loop", loop] + (["--limit", str(args.limit)] if args.limit else [])
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"{loop} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            result = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
            seconds[loop].append(elapsed)
            accuracy[loop].append(result["test_acc"])
            print(f"  rep {rep + 1}/{args.reps} {loop}: {elapsed:.1f} s, test accuracy {result['test_acc']:.4f}",
                  flush=True)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    record = {"benchmark": "classic_example", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "git_commit": git_commit(), "machine": machine(torch.device("cpu")), "limit": args.limit,
              "seconds": seconds, "test_acc": accuracy, "median_seconds": median,
              "ratio": median["example"] / median["nnlab"]}
    out = args.out / OUT_NAME
    atomic_write_json(out, record)
    print(f"wrote {out}")
    print(f"whole process, one epoch: example {median['example']:.1f} s, nnlab.train {median['nnlab']:.1f} s; "
          f"example/nnlab = {record['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
