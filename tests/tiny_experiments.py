"""A small synthetic problem and tiny experiments, shared by the tests and their subprocesses.

Importing this module registers nothing. The experiments carry their synthetic data by
value (an :class:`nnlab.data.ArrayData`), as a course's experiments do. Tests register them
through fixtures; a subprocess runs this file as a script, which registers them and then
acts like the ``nnlab`` command (``train ...``) or stores runs (``record ...``).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import torch

import nnlab.train
from nnlab import experiments as E
from nnlab.book import problems as P
from nnlab.data import ArrayData
from nnlab.models import build, mlp
from nnlab.train import TrainConfig

SIZES = {"train": 2048, "val": 512, "test": 512}
STEPS_PER_EPOCH = SIZES["train"] // 64  # at the tiny experiments' batch size


@functools.lru_cache(maxsize=None)
def synthetic_mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-shaped ten-class data: one fixed random prototype per class plus Gaussian noise.

    Same signature and output types as :func:`nnlab.data.mnist`; deterministic in every process.
    """
    protos = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3}[split])
    n = SIZES[split]
    labels = torch.randint(0, 10, (n,), generator=g)
    images = protos[labels] + 6.0 * torch.randn(n, 1, 28, 28, generator=g)
    return images, labels


def synthetic_data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {s: synthetic_mnist(s) for s in SIZES}


SYNTHETIC = ArrayData("synthetic-10", train=synthetic_mnist("train"), val=synthetic_mnist("val"),
                      test=synthetic_mnist("test"), normalise=False,
                      description="ten noisy prototypes, MNIST-shaped")

TINY = E.Experiment(
    name="test-tiny", purpose="A 16-unit MLP on synthetic data.", chapter="tests",
    variants=(E.Variant("main", tuple(mlp([16]))),),
    train=TrainConfig(epochs=2, batch_size=64, lr=3e-3), seeds=(0, 1), rules=P.MLP_100, data=SYNTHETIC)

# Every source of randomness a resume must restore: dropout, augmentation, a schedule.
RESUMABLE = E.Experiment(
    name="test-tiny-resume", purpose="A small MLP with dropout, augmentation and a schedule.",
    chapter="tests", variants=(E.Variant("main", tuple(mlp([32, 16], dropout=0.2))),),
    train=TrainConfig(epochs=6, batch_size=64, lr=3e-3, schedule="onecycle", augment="shift"),
    seeds=(0,), rules=P.MLP_100, data=SYNTHETIC)

# Six runs of a few seconds each: time to kill the command that trains them in parallel.
SLOW = E.Experiment(
    name="test-tiny-slow", purpose="Six slow runs of a small MLP.", chapter="tests",
    variants=(E.Variant("main", tuple(mlp([16]))),),
    train=TrainConfig(epochs=150, batch_size=64, lr=1e-3), seeds=tuple(range(6)), rules=P.MLP_100, data=SYNTHETIC)

EXPERIMENTS = (TINY, RESUMABLE, SLOW)


def seeded_model(spec, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(spec)


def _register_and_patch(step_delay: float = 0.0) -> None:
    for exp in EXPERIMENTS:
        E.register(exp)
    if step_delay > 0:  # slows every step without changing a number: time to kill the run
        lr_at = nnlab.train.lr_at

        def slow_lr_at(*args, **kwargs):
            time.sleep(step_delay)
            return lr_at(*args, **kwargs)

        nnlab.train.lr_at = slow_lr_at


def _record(name: str, seeds: list[int], barrier: Path, parties: int) -> None:
    from nnlab import results as store

    exp = E.get(name)
    variant = exp.variants[0]
    models = {s: seeded_model(variant.spec, s) for s in seeds}
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.001)  # all writers start together
    for s in seeds:
        store.record_run(name, variant.name, s, {"val_acc": s / 1000, "test_acc": s / 1000}, models[s])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--step-delay", type=float, default=0.0)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    r = sub.add_parser("record")
    r.add_argument("name")
    r.add_argument("--barrier", type=Path, required=True, help="folder where the writers meet")
    r.add_argument("--parties", type=int, default=2)
    r.add_argument("seeds", type=int, nargs="+")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as in the tests: tiny networks run fastest on one thread
    if args.cmd == "train":
        _register_and_patch(args.step_delay)
        from nnlab.cli import main as cli_main

        return cli_main(["train", *args.rest])
    _register_and_patch()
    _record(args.name, args.seeds, args.barrier, args.parties)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
