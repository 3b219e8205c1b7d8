"""Run an experiment: check rules and shapes, train every missing run, store each as it ends.

The driver (the process that runs :func:`run_experiment`) owns the results store. Worker
processes receive the experiment itself, by value (its data source, variants, rules and
recipe travel with it), train one run, and hand back its record and weights; only the
driver writes them. So an experiment defined in a notebook, in ``main()`` or on standard
input trains in parallel exactly as one registered in a module.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence

import torch

from nnlab import experiments as E
from nnlab import results as store
from nnlab.models import build, check_fits, count_parameters
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


def build_checked(exp: E.Experiment, variant: E.Variant) -> torch.nn.Module:
    """A variant's model, built for the experiment's data, refused if it breaks the rules or
    does not fit the data's input shape and number of classes."""
    model = build(variant.spec, exp.data.input_shape)
    check(model, exp.rules, input_shape=exp.data.input_shape)
    check_fits(model, exp.data.input_shape, exp.data.num_classes)
    return model


def train_one(exp: E.Experiment, variant: E.Variant, seed: int, *, device=None, resume: bool = False,
              progress: bool | None = None, stop_after_epoch=None) -> tuple[dict, torch.nn.Module]:
    """Train one (variant, seed) run of an experiment; returns its record and the model."""
    torch.manual_seed(seed)
    model = build_checked(exp, variant)
    cfg = exp.train_config(variant)
    ckpt = checkpoint_path(exp.name, variant.name, seed)
    if not resume and ckpt.exists():
        ckpt.unlink()
    res = train(model, cfg, seed, data=exp.data, device=device, desc=f"{exp.name} {variant.name} s{seed}",
                checkpoint=ckpt, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch)
    record = {"history": res.history, "val_loss": res.val_loss, "val_acc": res.val_acc,
              "test_loss": res.test_loss, "test_acc": res.test_acc, "seconds": res.seconds,
              "device": res.device, "parameters": count_parameters(model),
              "hidden_units": hidden_units(model, input_shape=exp.data.input_shape),
              "hidden_layers": hidden_layers(model, input_shape=exp.data.input_shape),
              "data": exp.data.describe(), "data_fingerprint": exp.data.fingerprint()}
    return record, model


def _train_in_worker(exp: E.Experiment, variant: str, seed: int, device, resume: bool, progress,
                     threads: int | None) -> tuple[dict, dict]:
    """One run in a worker process: its record and its weights (a CPU state dict)."""
    if threads:
        torch.set_num_threads(threads)
    record, model = train_one(exp, exp.variant(variant), seed, device=device, resume=resume, progress=progress)
    return record, {k: v.detach().cpu() for k, v in model.state_dict().items()}


@contextlib.contextmanager
def _spawnable_main():
    """Let spawned workers start when ``__main__`` came from standard input (``python -``):
    multiprocessing would re-run its ``__file__``, ``<stdin>``, which does not exist. The
    workers need nothing from it: the experiment reaches them by value."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.exists(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _store(exp: E.Experiment, variant: str, seed: int, record: dict, weights, fresh: bool) -> None:
    store.record_run(exp, variant, seed, record, weights, replace_damaged=fresh)
    checkpoint_path(exp.name, variant, seed).unlink(missing_ok=True)


def run_experiment(experiment: str | E.Experiment, *, seeds: Sequence[int] | None = None,
                   variants: Sequence[str] | None = None, device: str | None = None, resume: bool = False,
                   fresh: bool = False, progress: bool | None = None, log=None, jobs: int = 1) -> float:
    """Train the runs of an experiment (a registered name, or the
    :class:`~nnlab.experiments.Experiment` itself) that the store lacks or holds stale (all
    of them when ``fresh``).

    Each run is stored as soon as it ends, so an interrupted experiment keeps its finished
    runs. With ``jobs > 1`` independent runs train in parallel worker processes, each with
    ``cores // jobs`` threads (results can then differ from a one-process run in the last
    bits, as float sums are reduced in another order). Returns the wall time in seconds.

    Raises:
        RuleViolation: a variant breaks the experiment's rules (before anything trains).
        ModelDataMismatch: a variant does not fit the experiment's data (before anything trains).
        DivergedError: a run produced a non-finite loss (that run is not stored).
    """
    exp = E.get(experiment)
    name = exp.name
    dev = pick_device(device)
    if seeds is not None:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {list(seeds)} name a seed twice; give each seed once")
        unknown = sorted(set(seeds) - set(exp.seeds))
        if unknown:
            raise ValueError(f"seeds {unknown} are not in experiment {name!r} (its seeds: {list(exp.seeds)}); "
                             "add them to its config to train them")
    wanted_variants = [exp.variant(v) for v in variants] if variants else list(exp.variants)
    for v in wanted_variants:  # refuse illegal or ill-fitting models before spending any time
        build_checked(exp, v)
    status = store.status(exp)
    if status.state == "damaged" and not fresh:  # before any training: its runs must not be lost
        raise store.DamagedResult(f"result of experiment {name!r} is damaged: {status.detail}")
    # runs stored and current: a stale variant's runs are trained again
    done = set() if fresh else set(store.stored_current_runs(exp))
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
            with _spawnable_main():  # the workers start as the runs are submitted
                futures = [(v, s, pool.submit(_train_in_worker, exp, v.name, s, str(dev), resume, False, threads))
                           for v, s in todo]
            for i, (v, s, fut) in enumerate(futures, 1):
                record, weights = fut.result()
                _store(exp, v.name, s, record, weights, fresh)
                bar.update()
                report(i, v, s, record)
    else:
        for i, (v, s) in enumerate(todo, 1):
            record, model = train_one(exp, v, s, device=dev, resume=resume, progress=progress)
            _store(exp, v.name, s, record, model, fresh)
            report(i, v, s, record)
    return time.perf_counter() - t0


def load_or_train(experiment: str | E.Experiment, *, retrain_stale: bool = False,
                  device: str | None = None) -> dict:
    """The stored result of an experiment; trains its missing runs first (and stale ones if
    allowed)."""
    st = store.status(experiment)
    if st.state == "stale" and not retrain_stale:
        store.load(experiment)  # raises StaleResult with the retrain command
    if st.state != "ok":
        run_experiment(experiment, device=device)  # trains what is missing or stale, keeps the rest
    return store.load(experiment)
