"""A small synthetic problem and tiny experiments, shared by the tests and their subprocesses.

Importing this module registers nothing. The experiments carry their synthetic data by
value (an :class:`nnlab.data.ArrayData`), as a course's experiments do. Tests register them
through fixtures; a subprocess runs this file as a script, which registers them and then
acts like the ``nnlab`` command (``train ...``) or stores runs (``record ...``).

Gates let a test act while a subprocess is at a known point, whatever the machine's speed:
a process that reaches a gate announces it (the file ``<stage>-<pid>`` in the gate's folder)
and waits until the test opens it (creates ``open-<stage>``). ``train --gate FOLDER`` holds
every run at a training step (stage ``running``); ``$TINY_START_GATE`` holds every worker
process of a pool while it is still importing (stage ``starting``).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import time
from dataclasses import replace
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
SHAPE = (1, 28, 28)  # one input of the synthetic MNIST-shaped data, without the batch axis


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
    variants=(E.Variant("main", tuple(mlp([16], classes=10))),),
    train=TrainConfig(epochs=2, batch_size=64, lr=3e-3), seeds=(0, 1), rules=P.MLP_100, data=SYNTHETIC)

# Every source of randomness a resume must restore: dropout, augmentation, a schedule.
RESUMABLE = E.Experiment(
    name="test-tiny-resume", purpose="A small MLP with dropout, augmentation and a schedule.",
    chapter="tests", variants=(E.Variant("main", tuple(mlp([32, 16], dropout=0.2, classes=10))),),
    train=TrainConfig(epochs=6, batch_size=64, lr=3e-3, schedule="onecycle", augment="shift"),
    seeds=(0,), rules=P.MLP_100, data=SYNTHETIC)

# Six runs to interrupt while they are held at a gate (``train --gate``) in parallel.
HELD = E.Experiment(
    name="test-tiny-held", purpose="Six runs of a small MLP, to interrupt.", chapter="tests",
    variants=(E.Variant("main", tuple(mlp([16], classes=10))),),
    train=TrainConfig(epochs=4, batch_size=64, lr=3e-3), seeds=tuple(range(6)), rules=P.MLP_100, data=SYNTHETIC)

EXPERIMENTS = (TINY, RESUMABLE, HELD)
START_GATE = "TINY_START_GATE"  # environment variable: the folder of the pool workers' start gate
PATIENCE = 300.0  # seconds: only a guard against a gate or an event that never comes


def wait_at_gate(folder: str | Path, stage: str) -> None:
    """Announce that this process reached ``stage`` and wait until the test opens its gate."""
    folder = Path(folder)
    (folder / f"{stage}-{os.getpid()}").touch()
    deadline = time.monotonic() + PATIENCE
    while not (folder / f"open-{stage}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {folder / f'open-{stage}'} was never opened")
        time.sleep(0.005)


def open_gate(folder: Path, stage: str) -> None:
    (folder / f"open-{stage}").touch()


def arrivals(folder: Path, stage: str) -> list[int]:
    """The pids of the processes that reached ``stage``, in pid order."""
    return sorted(int(p.name.rsplit("-", 1)[1]) for p in folder.glob(f"{stage}-*"))


def await_arrivals(folder: Path, stage: str, count: int, proc=None, meanwhile=None, every: float = 0.01
                   ) -> list[int]:
    """Wait until ``count`` processes reached ``stage``, looking ``every`` seconds (and calling
    ``meanwhile()`` between looks); fails if ``proc`` (a Popen) ends first, or after
    :data:`PATIENCE` seconds."""
    deadline = time.monotonic() + PATIENCE
    while len(found := arrivals(folder, stage)) < count:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the command ended before {count} process(es) reached {stage}:\n"
                                 f"{proc.communicate()[1] or ''}"[-3000:])
        assert time.monotonic() < deadline, f"only {len(found)} of {count} process(es) reached {stage}"
        if meanwhile:
            meanwhile()
        time.sleep(every)
    return found


_HELD: dict = {}  # this process's training gate: folder, step, and whether this run passed it


def _gated_lr_at(lr_at, config, step, *args, **kwargs):
    if not _HELD["passed"] and step >= _HELD["at_step"]:
        _HELD["passed"] = True
        wait_at_gate(_HELD["folder"], "running")
    return lr_at(config, step, *args, **kwargs)


class GatedData(ArrayData):
    """``source`` whose runs wait at a gate in ``folder`` at global step ``at_step`` (stage
    ``running``). It describes itself as ``source`` does: the runs and their numbers are
    the same, only held. It travels by value to pool workers and cluster nodes alike."""

    def __init__(self, source: ArrayData, folder: str | Path, at_step: int = 0):
        self.__setstate__(source.__getstate__())
        self.folder, self.at_step = str(folder), at_step

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":  # once per run, in the process that trains it
            if not _HELD:
                nnlab.train.lr_at = functools.partial(_gated_lr_at, nnlab.train.lr_at)
            _HELD.update(folder=self.folder, at_step=self.at_step, passed=False)
        return super().load(split)


DOOMED_LR = 0.00123  # a run with this learning rate kills its own process at its first step


def _doomed_lr_at(lr_at, config, *args, **kwargs):
    if config.lr == DOOMED_LR:  # as the out-of-memory killer would
        os.kill(os.getpid(), signal.SIGKILL)
    return lr_at(config, *args, **kwargs)


class DoomedData(ArrayData):
    """``source`` on which a run whose recipe has :data:`DOOMED_LR` dies by SIGKILL, every
    time it is tried; other runs train as on ``source``."""

    def __init__(self, source: ArrayData):
        self.__setstate__(source.__getstate__())

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train" and not getattr(nnlab.train.lr_at, "doomed", False):
            nnlab.train.lr_at = functools.partial(_doomed_lr_at, nnlab.train.lr_at)
            nnlab.train.lr_at.doomed = True
        return super().load(split)


def seeded_model(spec, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(spec, SHAPE)


def _register(gate: Path | None = None, gate_step: int = 0) -> None:
    for exp in EXPERIMENTS:
        E.register(replace(exp, data=GatedData(exp.data, gate, gate_step)) if gate else exp)


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
    t.add_argument("--gate", type=Path, help="hold every run at a gate in this folder")
    t.add_argument("--gate-step", type=int, default=0, help="the global step where runs wait")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    r = sub.add_parser("record")
    r.add_argument("name")
    r.add_argument("--barrier", type=Path, required=True, help="folder where the writers meet")
    r.add_argument("--parties", type=int, default=2)
    r.add_argument("seeds", type=int, nargs="+")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as in the tests: tiny networks run fastest on one thread
    if args.cmd == "train":
        _register(args.gate, args.gate_step)
        from nnlab.cli import main as cli_main

        return cli_main(["train", *args.rest])
    _register()
    _record(args.name, args.seeds, args.barrier, args.parties)
    return 0


if __name__ == "__mp_main__" and os.environ.get(START_GATE):  # a pool worker, still importing
    wait_at_gate(os.environ[START_GATE], "starting")

if __name__ == "__main__":
    # run the module's own copy, so that what the experiments carry pickles as
    # tiny_experiments.* (importable by pool workers and cluster nodes), not __main__.*
    from tiny_experiments import main as module_main

    sys.exit(module_main(sys.argv[1:]))
