"""Run an experiment: check rules and shapes, train every missing run, store each as it ends.

The driver (the process that runs :func:`run_experiment`) owns the results store. Worker
processes receive the experiment itself, by value (its data source, variants, rules and
recipe travel with it), train one run, and hand back its record and weights; only the
driver writes them. So an experiment defined in a notebook, in ``main()`` or on standard
input trains in parallel exactly as one registered in a module.

Where the runs train is one seam, a generator of ``(variant, seed, record, weights or
exception)`` that :func:`run_experiment` consumes: ``_here`` (this process),
``_in_pool`` (local worker processes, the default) or ``_on_cluster`` (Ray tasks on a
cluster, :mod:`nnlab.cluster`; Ray is imported only then).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence

import torch

from nnlab import experiments as E
from nnlab import reproduction, tasks
from nnlab import results as store
from nnlab.factories import FactoryError
from nnlab.models import ModelDataMismatch, SpecError, check_fits, count_parameters
from nnlab.rules import RuleViolation, check, hidden_layers, hidden_units
from nnlab.train import DivergedError, pick_device, progress_class, show_progress, train


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
    model = variant.build(exp.data)
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
    with torch_threads(cfg.threads):  # the recipe's, not the scheduler's: the numbers depend on it
        res = train(model, cfg, seed, data=exp.data, device=device, desc=f"{exp.name} {variant.name} s{seed}",
                    checkpoint=ckpt, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch,
                    keep_failed=exp.keep_failed)
    record = {"history": res.history, **res.record(), "seconds": res.seconds,
              "device": res.device, "parameters": count_parameters(model),
              "hidden_units": hidden_units(model, input_shape=exp.data.input_shape),
              "hidden_layers": hidden_layers(model, input_shape=exp.data.input_shape),
              "data": exp.data.describe(), "data_fingerprint": exp.data.fingerprint(),
              "threads": cfg.threads, "cpu_capability": torch.backends.cpu.get_cpu_capability(), **res.extra}
    if variant.factory is not None:  # the code the model came from, as this process read it
        record["model_source"] = {"factory": variant.factory, **variant.source()}
    if res.device.startswith("cuda"):  # the GPU decides a CUDA run's kernels, not the CPU
        record["gpu"] = torch.cuda.get_device_name(torch.device(res.device))
    return record, model


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run the block with ``threads`` intra-op threads, then restore the previous number.

    A run's float sums are reduced in an order that depends on its thread count, so the
    count is part of the recipe (``TrainConfig.threads``) and the same run gives the same
    numbers whether it trains alone, in a pool of workers or on another machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the driver is gone (even by SIGKILL): so is this run
            os._exit(1)


def _worker_init(driver: int) -> None:
    """Every worker dies with the driver (whose pid it is given: the driver may already be
    gone by the time a worker has imported torch), and leaves Ctrl-C to it."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm would otherwise make a multiprocessing lock here, a named semaphore that a killed
    # worker never releases ("leaked semaphore objects" at exit); a worker shows no bars
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    if sys.platform.startswith("linux"):  # the kernel kills this process when its parent dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != driver:  # it died while this worker was starting
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(driver,), daemon=True).start()


def _train_in_worker(exp: E.Experiment, variant: str, seed: int, device, resume: bool) -> tuple[dict, dict]:
    """One run in a worker process: its record and its weights (a CPU state dict)."""
    record, model = train_one(exp, exp.variant(variant), seed, device=device, resume=resume, progress=False)
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


def _runs_to_train(exp: E.Experiment, seeds, variants, fresh: bool) -> list[tuple[E.Variant, int]]:
    """The (variant, seed) runs the store lacks or holds stale, after every check that can
    fail before any training."""
    if seeds is not None:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {list(seeds)} name a seed twice; give each seed once")
        unknown = sorted(set(seeds) - set(exp.seeds))
        if unknown:
            raise ValueError(f"seeds {unknown} are not in experiment {exp.name!r} (its seeds: {list(exp.seeds)}); "
                             "add them to its config to train them")
    wanted_variants = [exp.variant(v) for v in variants] if variants else list(exp.variants)
    refused = []  # refuse illegal or ill-fitting models before spending any time, naming each
    for v in wanted_variants:
        try:
            build_checked(exp, v)
        except (RuleViolation, ModelDataMismatch, SpecError, FactoryError) as exc:
            refused.append((v.name, exc))
    if refused:
        detail = "; ".join(f"variant {name!r}: {exc}" for name, exc in refused)
        raise type(refused[0][1])(f"experiment {exp.name!r} cannot train: {detail}")
    status = store.status(exp)
    folder = (store.experiment_dir(exp) / "result.json").is_dir()  # --fresh replaces a damaged file, not this
    if status.state == "damaged" and (folder or not fresh):  # its runs must not be lost
        raise store.DamagedResult(f"result of experiment {exp.name!r} is damaged: {status.detail}")
    done = set() if fresh else set(store.stored_current_runs(exp))  # a stale variant's runs train again
    return [(v, s) for v in wanted_variants for s in (seeds or exp.seeds) if store.run_key(v.name, s) not in done]


MAX_RETRIES = 2  # a run whose worker process dies (killed, out of memory) is tried at most 3 times


class WorkerDied(RuntimeError):
    """A run's worker process died (killed, e.g. by the out-of-memory killer) every time it
    was tried."""


class _Retrying:
    """A notice from :func:`_in_pool`: a run's worker died; the run is tried again."""

    def __init__(self, why: str):
        self.why = why

    def __str__(self) -> str:
        return self.why


def _train_in_pool_worker(whereabouts: str, exp: E.Experiment, variant: str, seed: int, device,
                          resume: bool) -> tuple[dict, dict]:
    """:func:`_train_in_worker`, leaving word in the folder ``whereabouts`` of which run this
    process trains (a file named by its pid), so that the driver knows whose worker died."""
    note = os.path.join(whereabouts, str(os.getpid()))
    with open(note, "w") as f:
        f.write(f"{variant}\n{seed}")
    try:
        return _train_in_worker(exp, variant, seed, device, resume)
    finally:
        os.unlink(note)


def _killed(processes: dict, whereabouts: str) -> tuple[set[tuple[str, int]], str]:
    """The runs whose worker died of something other than the pool's own SIGTERM to the
    workers of a broken pool (after ``shutdown`` joined them), and how that worker died."""
    import signal

    runs, how = set(), ""
    for pid, process in processes.items():
        code = process.exitcode
        if code in (None, 0, -signal.SIGTERM):
            continue
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        try:
            with open(os.path.join(whereabouts, str(pid))) as f:
                variant, seed = f.read().split("\n")
            runs.add((variant, int(seed)))
        except (OSError, ValueError):  # it died between runs, or before it wrote its note
            continue
    return runs, how


def _in_pool(exp, todo, dev, resume, jobs, show):
    """Yield ``(variant, seed, record, weights or exception)`` as runs end in worker processes,
    in the order they end, and a :class:`_Retrying` notice for a run whose worker died.

    A worker that dies (SIGKILL from the out-of-memory killer, say) breaks its pool: every
    run not yet ended there is submitted again to a fresh pool and goes on from its last
    checkpoint. The run whose worker died is tried at most :data:`MAX_RETRIES` more times, then
    it fails alone (:class:`WorkerDied`); the runs whose workers the broken pool took with it
    are not charged (if the dead worker's run is unknown, every run in the pool is).

    On any interruption (Ctrl-C, SIGTERM, an error in the driver) the queued runs are
    cancelled and the workers are killed at once: nothing more is trained or stored. The
    workers also die with the driver if it is killed outright (see ``_worker_init``).
    """
    import tempfile
    from concurrent.futures.process import BrokenProcessPool

    tqdm = progress_class()
    pending, deaths = [(v, s, resume) for v, s in todo], {}
    with tempfile.TemporaryDirectory(prefix="nnlab-pool-") as whereabouts, \
            tqdm(total=len(todo), desc=f"{exp.name} ({jobs} parallel runs)", unit="run", disable=not show,
                 leave=False, dynamic_ncols=True) as bar:
        while pending:
            lost, processes = [], {}
            with contextlib.closing(_one_pool(exp, pending, dev, jobs, whereabouts, processes)) as ending:
                for v, s, outcome in ending:
                    if isinstance(outcome, BrokenProcessPool):
                        lost.append((v, s))
                        continue
                    bar.update()
                    yield v, s, *outcome
            pending = []
            killed, how = _killed(processes, whereabouts)
            charged = {(v.name, s) for v, s in lost} & killed or {(v.name, s) for v, s in lost}
            for v, s in lost:
                if (v.name, s) in charged:
                    deaths[v.name, s] = tries = deaths.get((v.name, s), 0) + 1
                    why = f"its worker process died ({how or 'cause unknown'})"
                    if tries > MAX_RETRIES:
                        bar.update()
                        yield v, s, None, WorkerDied(f"{why}, {tries} times; not tried again")
                        continue
                    yield v, s, None, _Retrying(f"{why}; trying again (attempt {tries + 1} of {MAX_RETRIES + 1})")
                pending.append((v, s, True))  # each goes on from its last checkpoint


def _one_pool(exp, runs, dev, jobs, whereabouts, processes: dict):
    """Yield ``(variant, seed, (record, weights or exception) or BrokenProcessPool)`` for
    ``runs`` (``(variant, seed, resume)``) in one pool of worker processes, as they end;
    ``processes`` is filled with the pool's worker processes by pid."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                               initargs=(os.getpid(),))
    futures = {}
    try:
        with _spawnable_main():  # the workers start as the runs are submitted
            for v, s, resume in runs:
                futures[pool.submit(_train_in_pool_worker, whereabouts, exp, v.name, s, str(dev), resume)] = v, s
        processes.update(getattr(pool, "_processes", None) or {})  # every worker it will have (spawn)
        for fut in as_completed(futures):
            v, s = futures[fut]
            try:
                yield v, s, fut.result()
            except BrokenProcessPool as exc:  # a worker died: this run did not end
                yield v, s, exc
            except Exception as exc:  # this run failed; the others go on
                yield v, s, (None, exc)
    except BaseException:
        for fut in futures:
            fut.cancel()
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # stop what is running now
            process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _results_in(folder: str):
    """``$NNLAB_RESULTS`` set to ``folder`` for the block, then restored."""
    before = os.environ.get("NNLAB_RESULTS")
    os.environ["NNLAB_RESULTS"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NNLAB_RESULTS", None)
        else:
            os.environ["NNLAB_RESULTS"] = before


def _train_on_node(exp: E.Experiment, variant: str, seed: int, device: str) -> tuple[dict, dict]:
    """One run as a Ray task on a cluster node: the code of a local run (:func:`train_one`,
    the recipe's thread count), its checkpoints in a node-local scratch folder that goes with
    it, never in a results store. Returns the record and the weights (a CPU state dict).

    The folder goes when the task ends, fails or is cancelled (Ray interrupts it); one left by a
    worker that was killed outright is removed by the next task on that node."""
    import tempfile

    from nnlab.cluster import SCRATCH_PREFIX, remove_dead_scratch

    remove_dead_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch, _results_in(scratch):
        return _train_in_worker(exp, variant, seed, device, False)


def _on_cluster(exp, todo, device, address, show):
    """Yield ``(variant, seed, record, weights or exception)`` as runs end as Ray tasks on the
    cluster at ``address`` (see :mod:`nnlab.cluster`), in the order they end.

    Each task asks for the run's threads (``TrainConfig.threads``) as CPUs and, on CUDA, one
    GPU. Every record names the node that trained it (``record["node"]``); a failed run comes
    with ``{"node": ...}`` for its record. Outstanding tasks are cancelled on any interruption.
    """
    tqdm = progress_class()

    from nnlab import cluster

    ray = cluster.connect(address)
    dev = cluster.resolve_device(ray, device)
    gpus = 1 if dev == "cuda" else 0
    runs = {(v.name, s): v for v, s in todo}
    calls = [((v.name, s), (v.name, s, dev), exp.train_config(v).threads, gpus) for v, s in todo]
    with tqdm(total=len(todo), desc=f"{exp.name} (Ray cluster {address})", unit="run", disable=not show,
              leave=False, dynamic_ncols=True) as bar:
        for (name, s), node, result, error in cluster.run(address, _train_on_node, exp, calls):
            bar.update()
            if error is not None:
                yield runs[name, s], s, {"node": node} if node else None, error
                continue
            record, weights = result
            record["node"] = node
            yield runs[name, s], s, record, weights


def _here(exp, todo, dev, resume, progress):
    """Yield ``(variant, seed, record, model or exception)`` for runs trained in this process."""
    for v, s in todo:
        try:
            record, model = train_one(exp, v, s, device=dev, resume=resume, progress=progress)
        except DivergedError as exc:  # this run failed; the others go on
            record, model = None, exc
        yield v, s, record, model


def _say_what_is_done(exp: E.Experiment, seeds, variants, fresh: bool, todo: list, say) -> None:
    """Before training: that nothing is left to train, or which stored runs are stale and why."""
    wanted = len(variants or exp.variants) * len(seeds or exp.seeds)
    if not todo:
        which = "all" if wanted == len(exp.runs()) else "the requested"
        say(f"[{exp.name}] {which} {wanted} run(s) stored and current, nothing to train "
            f"(retrain them with --fresh)")
        return
    changed = None if fresh else store.changes(exp)
    if changed:
        say(f"[{exp.name}] stale: {changed}; training their runs again")


def _resumed(record: dict, epochs: int, asked: bool) -> str:
    """Whether a run went on from its checkpoint (asked with --resume, or tried again after
    its worker died) or, when asked to, found none and trained from the start."""
    if "resumed_from_epoch" in record:
        return f" [resumed from its checkpoint after epoch {record['resumed_from_epoch']} of {epochs}]"
    return " [no checkpoint to resume: trained from the start]" if asked else ""


def run_experiment(experiment: str | E.Experiment, *, seeds: Sequence[int] | None = None,
                   variants: Sequence[str] | None = None, device: str | None = None, resume: bool = False,
                   fresh: bool = False, progress: bool | None = None, log=None, jobs: int = 1,
                   cluster: str | None = None) -> float:
    """Train the runs of an experiment (a registered name, or the
    :class:`~nnlab.experiments.Experiment` itself) that the store lacks or holds stale (all
    of them when ``fresh``).

    Each run is stored as soon as it ends, so an interrupted experiment keeps its finished
    runs. With ``jobs > 1`` independent runs train in parallel worker processes; each run
    uses the number of threads its recipe names (``TrainConfig.threads``), so its numbers
    do not depend on how it was scheduled. A run that fails (it diverges) is reported and
    not stored; the others still train and are stored, and then the first failure is
    raised. A run whose worker process dies (killed, out of memory) is tried again from its
    last checkpoint, at most :data:`MAX_RETRIES` times. Returns the wall time in seconds.

    With ``cluster`` (the address of a Ray cluster's head, ``host:port``, or ``auto`` for the
    one this node joined) each run is a Ray task there instead (needs ``nnlab-course[cluster]``);
    ``jobs`` does not apply, the device is the cluster's (``auto``: CUDA if it has a GPU),
    and this process still writes every run into its store as it ends. A task keeps no
    checkpoint: with ``resume`` an unfinished run trains from the start.

    Raises:
        RuleViolation: a variant breaks the experiment's rules (before anything trains).
        ModelDataMismatch: a variant does not fit the experiment's data (before anything trains).
        nnlab.factories.FactoryError: a variant's factory cannot be imported or called, or returns
            no ``nn.Module`` (before anything trains).
        DamagedResult: the stored result cannot be read and ``fresh`` is not set (before
            anything trains).
        DivergedError: a run diverged (after the other runs were stored).
        WorkerDied: a run's worker process died (killed, out of memory) each of the
            ``1 + MAX_RETRIES`` times the run was tried (after the other runs were stored).
        nnlab.cluster.ClusterError: ``cluster`` given but Ray is not installed, or the cluster cannot be
            reached or cannot run the runs (before anything trains).
    """
    exp = E.get(experiment)
    if cluster:
        from nnlab.cluster import require_ray

        require_ray()  # resume: a task keeps no checkpoint, so an unfinished run starts again
    else:
        dev = pick_device(device)
    todo = _runs_to_train(exp, seeds, variants, fresh)
    say = log or _stderr
    _say_what_is_done(exp, seeds, variants, fresh, todo, say)
    t0 = time.perf_counter()
    show = show_progress() if progress is None else progress
    if cluster:
        runs = _on_cluster(exp, todo, device, cluster, show) if todo else (run for run in ())
    elif jobs > 1 and len(todo) > 1 and dev.type == "cpu":
        runs = _in_pool(exp, todo, dev, resume, jobs, show)
    else:
        runs = _here(exp, todo, dev, resume, progress)
    failures, done, i, retried = [], 0, 0, 0
    try:
        for v, s, record, weights in runs:
            if isinstance(weights, _Retrying):
                retried += 1
                say(f"[{exp.name}] {v.name} seed={s}: {weights}")
                continue
            i += 1
            where = f"[{exp.name}] {i}/{len(todo)} {v.name} seed={s}:"
            if isinstance(weights, BaseException):
                failures.append(weights)
                node = f" on node {record['node']}" if record and record.get("node") else ""
                if len(todo) > 1 or node:  # a lone local run's failure is the error itself
                    say(f"{where} FAILED{node}, not stored: {weights}")
                continue
            _store(exp, v.name, s, record, weights, fresh)
            done += 1
            main = tasks.get(exp.train_config(v).task).main
            accs = "".join(f"{k}={record[k]:.4f} " for k in (f"val_{main}", f"test_{main}") if record[k] is not None)
            failed = f" [kept, learned nothing: {record['failed']}]" if record.get("failed") else ""
            node = f" from node {record['node']}" if record.get("node") else ""
            say(f"{where} {accs}({record['seconds']:.0f} s on {record['device']}){node}{failed}"
                f"{_resumed(record, exp.train_config(v).epochs, resume)}")
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as the CLI turns it into one
        if cluster:
            say(f"[{exp.name}] stopped: {done} of {len(todo)} run(s) finished and stored; the runs still on "
                "the cluster were cancelled")
        else:
            say(f"[{exp.name}] stopped: {done} of {len(todo)} run(s) finished and stored; runs that had "
                "started keep their last epoch's checkpoint (continue with --resume)")
        raise
    finally:
        runs.close()  # an interrupted pool cancels its queue and kills its workers now, not at GC
    if retried:
        say(f"[{exp.name}] {done} of {len(todo)} run(s) stored, after {retried} retry(-ies) of a run whose "
            "worker process died")
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise type(failures[0])(f"{len(failures)} of {len(todo)} runs of {exp.name!r} failed (each named above), "
                                f"{done} stored; the first: {failures[0]}")
    return time.perf_counter() - t0


REPRODUCED = reproduction.METRICS


def reproduce(experiment: str | E.Experiment, *, seeds: Sequence[int] | None = None,
              variants: Sequence[str] | None = None, device: str | None = "cpu") -> list[dict]:
    """Train stored runs again, alone, in a scratch store, and compare their metrics with
    the stored ones. One row per run with ``variant``, ``seed``, ``verdict`` (identical,
    rounding, noise or different; see ``nnlab.reproduction``), ``same`` (identical),
    ``differences`` (``{metric: (stored, now)}``), ``largest_relative`` (``(metric,
    relative difference)`` or None), ``in_stds`` (each difference in standard deviations of
    the variant's stored seeds), ``spread_seeds`` (how many stored seeds that spread is
    of), and the thread count and CPU kernel level
    (``torch.backends.cpu.get_cpu_capability()``) of both trainings. The store itself is not
    touched.

    Bit-identical numbers need the same thread count (part of the recipe) and the same CPU
    kernels: oneDNN and MKL pick their kernels by instruction set (AVX2, AVX-512, ...), so a
    run trained on another kind of CPU gives other last bits, and after thousands of steps
    slightly different accuracies.

    Raises:
        nnlab.experiments.UnknownVariant: a name in ``variants`` is not a variant of the experiment.
        MissingResult: no stored run of those variants and seeds.
    """
    import tempfile

    exp = E.get(experiment)
    stored = store.stored_current_runs(exp)
    wanted = [v.name for v in exp.variants] if variants is None else [exp.variant(v).name for v in variants]
    keys = [k for k, r in stored.items() if r["variant"] in wanted and (seeds is None or r["seed"] in seeds)]
    if not keys:
        raise store.MissingResult(f"experiment {exp.name!r} has no stored run of those variants and seeds to "
                                  f"reproduce; run `{store.retrain_command(exp)}` first")
    of_variant = {v: [r for r in stored.values() if r["variant"] == v] for v in wanted}
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnlab-reproduce-") as scratch, _results_in(scratch):
        for key in keys:  # checkpoints of the new runs go to the scratch store
            run = stored[key]
            record, _ = train_one(exp, exp.variant(run["variant"]), run["seed"], device=device, progress=False)
            verdict = reproduction.compare(run, record, reproduction.seed_spread(of_variant[run["variant"]]))
            rows.append({"variant": run["variant"], "seed": run["seed"], **verdict,
                         "same": verdict["verdict"] == "identical",
                         "spread_seeds": len(of_variant[run["variant"]]),
                         "threads": record["threads"], "stored_threads": run.get("threads"),
                         "cpu_capability": record["cpu_capability"],
                         "stored_cpu_capability": run.get("cpu_capability")})
    return rows


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
