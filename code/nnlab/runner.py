"""Run a registered experiment: check rules, train every missing run, store each as it ends."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import torch

from nnlab import experiments as E
from nnlab import results as store
from nnlab.models import build, count_parameters
from nnlab.rules import check, hidden_layers, hidden_units
from nnlab.train import pick_device, show_progress, train


def default_jobs(device: str | torch.device | None = None) -> int:
    """How many runs ``nnlab train`` trains at once unless ``--jobs`` says: ``$NNLAB_JOBS`` if
    set, else one per core on the CPU and one on an accelerator.

    On the CPU, independent runs with one thread each beat one run at a time with every core:
    batches of 32 are too small to keep several threads busy, and a process never waits at a
    thread barrier (``benchmarks/parallel_runs.py`` measures it; the README quotes the figures).
    """
    env = os.environ.get("NNLAB_JOBS")
    if env:
        try:
            jobs = int(env)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise ValueError(f"NNLAB_JOBS must be a positive integer, got {env!r}; unset it or use e.g. NNLAB_JOBS=1")
        return jobs
    return (os.cpu_count() or 1) if pick_device(device).type == "cpu" else 1


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def checkpoint_path(name: str, variant: str, seed: int):
    safe = variant.replace("/", "_").replace("=", "")
    return store.experiment_dir(name) / ".checkpoints" / f"{safe}-seed{seed}.pt"


def train_one(exp: E.Experiment, variant: E.Variant, seed: int, *, device=None, resume: bool = False,
              progress: bool | None = None, stop_after_epoch=None) -> tuple[dict, torch.nn.Module]:
    """Train one (variant, seed) run of an experiment; returns its record and the model."""
    torch.manual_seed(seed)
    model = build(variant.spec)
    check(model, exp.rules)
    cfg = exp.train_config(variant)
    ckpt = checkpoint_path(exp.name, variant.name, seed)
    if not resume and ckpt.exists():
        ckpt.unlink()
    res = train(model, cfg, seed, device=device, desc=f"{exp.name} {variant.name} s{seed}",
                checkpoint=ckpt, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch)
    record = {"history": res.history, "val_loss": res.val_loss, "val_acc": res.val_acc,
              "test_loss": res.test_loss, "test_acc": res.test_acc, "seconds": res.seconds,
              "device": res.device, "parameters": count_parameters(model),
              "hidden_units": hidden_units(model), "hidden_layers": hidden_layers(model)}
    return record, model


def _run_and_store(name: str, variant: str, seed: int, device, resume: bool, progress, threads: int | None) -> dict:
    """Train one run and store it (also the body of a worker process)."""
    if threads:
        torch.set_num_threads(threads)
    exp = E.get(name)
    record, model = train_one(exp, exp.variant(variant), seed, device=device, resume=resume, progress=progress)
    store.record_run(name, variant, seed, record, model)
    checkpoint_path(name, variant, seed).unlink(missing_ok=True)
    return record


def run_experiment(name: str, *, seeds: Sequence[int] | None = None, variants: Sequence[str] | None = None,
                   device: str | None = None, resume: bool = False, fresh: bool = False,
                   progress: bool | None = None, log=None, jobs: int = 1) -> float:
    """Train the runs of ``name`` that the store lacks or holds stale (all of them when ``fresh``).

    Each run is stored as soon as it ends, so an interrupted experiment keeps its finished
    runs. With ``jobs > 1`` independent runs train in parallel worker processes, each with
    ``cores // jobs`` threads (results can then differ from a one-process run in the last
    bits, as float sums are reduced in another order). Returns the wall time in seconds.

    Raises:
        RuleViolation: a variant breaks the experiment's rules (before anything trains).
        DivergedError: a run produced a non-finite loss (that run is not stored).
    """
    exp = E.get(name)
    dev = pick_device(device)
    if seeds is not None:
        unknown = sorted(set(seeds) - set(exp.seeds))
        if unknown:
            raise ValueError(f"seeds {unknown} are not in experiment {name!r} (its seeds: {list(exp.seeds)}); "
                             "add them to its config to train them")
    wanted_variants = [exp.variant(v) for v in variants] if variants else list(exp.variants)
    for v in wanted_variants:  # refuse illegal models before spending any time
        check(build(v.spec), exp.rules)
    # runs stored and current: a stale variant's runs are trained again
    done = set() if fresh else set(store.stored_current_runs(name))
    todo = [(v, s) for v in wanted_variants for s in (seeds or exp.seeds)
            if store.run_key(v.name, s) not in done]
    t0 = time.perf_counter()

    def report(i: int, v: E.Variant, s: int, record: dict) -> None:
        accs = "".join(f"{k}={record[k]:.4f} " for k in ("val_acc", "test_acc") if record[k] is not None)
        (log or _stderr)(f"[{name}] {i}/{len(todo)} {v.name} seed={s}: {accs}"
                         f"({record['seconds']:.0f} s on {record['device']})")

    if jobs > 1 and len(todo) > 1 and dev.type == "cpu":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from tqdm.auto import tqdm

        threads = max(1, (os.cpu_count() or 1) // jobs)
        show = show_progress() if progress is None else progress
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool, \
                tqdm(total=len(todo), desc=f"{name} ({jobs} parallel runs)", unit="run",
                     disable=not show, leave=False, dynamic_ncols=True) as bar:
            futures = [(v, s, pool.submit(_run_and_store, name, v.name, s, str(dev), resume, False, threads))
                       for v, s in todo]
            for i, (v, s, fut) in enumerate(futures, 1):
                record = fut.result()
                bar.update()
                report(i, v, s, record)
    else:
        for i, (v, s) in enumerate(todo, 1):
            report(i, v, s, _run_and_store(name, v.name, s, dev, resume, progress, None))
    return time.perf_counter() - t0
