"""Grading a class: one sandbox per submission, ``jobs`` at a time, reports written as each
finishes; Ctrl-C or SIGTERM stops within seconds, and ``resume`` grades only what is left."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from nnlab.grade import grader, sandbox
from nnlab.grade.problem import Problem
from nnlab.grade.reports import write_report, write_summary


def _unique(names: list[str]) -> list[str]:
    """Names in order, the repeats of a name numbered ``name-2``, ``name-3``, ... skipping any
    name already given or used by another submission (``bob/``, ``bob.py`` and ``bob-2.py``
    get ``bob``, ``bob-3`` and ``bob-2``): reports are written by name."""
    taken = set(names)
    first: set[str] = set()
    out = []
    for n in names:
        if n not in first:
            first.add(n)
            out.append(n)
            continue
        k = 2
        while f"{n}-{k}" in taken:
            k += 1
        taken.add(f"{n}-{k}")
        out.append(f"{n}-{k}")
    return out


def _finished(out: Path | None, problem: Problem, path: Path, name: str) -> dict | None:
    """A report already written for this submission, as it is now, under this problem."""
    if out is None:
        return None
    try:
        report = json.loads((out / name / "report.json").read_text())
        prov = report["provenance"]
        files = grader.submission_files(path)
    except (OSError, ValueError, KeyError, TypeError, grader.SubmissionError):
        return None
    same = prov.get("submission_sha256") == grader._files_sha256(files) \
        and prov.get("problem_sha256") == grader.problem_sha256(problem)
    return report if same else None


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it kills us if needed


def _sequential(problem: Problem, todo, stop: threading.Event):
    for path, name in todo:
        yield grader.grade_one(problem, path, name, stop=stop)


def _pooled(problem: Problem, todo, jobs: int):
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)
    try:
        pending = {pool.submit(grader.grade_one, problem, p, n) for p, n in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    except BaseException:  # interrupted: a sandbox dies with its worker
        workers = list((pool._processes or {}).values())
        for proc in workers:
            with contextlib.suppress(Exception):
                proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        sandbox.clean_up_after([p.pid for p in workers])
        raise
    pool.shutdown(wait=True)


def _grade_on_node(problem: Problem, files: dict[str, bytes], name: str, strict: bool) -> dict:
    """On a cluster node: the submission's files, received by value, graded there (in a
    sandbox with every protection, if ``strict``)."""
    import shutil
    import tempfile

    sandbox.require(strict)
    folder = Path(tempfile.mkdtemp(prefix="nnlab-grade-node-")) / name
    try:
        folder.mkdir()
        for fname, data in files.items():
            (folder / Path(fname).name).write_bytes(data)
        return grader.grade_one(problem, folder, name)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def _clustered(problem: Problem, todo, address: str, strict: bool):
    """One Ray task per submission, on the cluster ``nnlab train --cluster`` uses; each node
    needs bubblewrap and the problem's data. A task Ray gives up on fails its submission only."""
    from nnlab import cluster

    calls = []
    for path, name in todo:
        try:
            files = {n: p.read_bytes() for n, p in grader.submission_files(path).items()}
        except (OSError, grader.SubmissionError):
            files = {}
        calls.append((name, (files, name, strict), 1, 0))
    for name, node, report, error in cluster.run(address, _grade_on_node, problem, calls):
        if error is not None:
            report = grader.grade_one(problem, Path("/nonexistent") / name, name)
            report["requirements"][0]["reason"] = f"the cluster could not grade it: {error}"
        report["graded_on"] = node
        yield report


def grade(problem: Problem, submissions: list[str | Path], out: str | Path | None = None, *, jobs: int = 1,
          progress: bool | None = None, resume: bool = False, require_isolation: bool = False,
          cluster: str | None = None) -> list[dict]:
    """Grade every submission (class folders are expanded, see :func:`~nnlab.grade.grader.expand`)
    and, when ``out`` is given, write ``out/<name>/report.json`` and ``report.md`` as each
    finishes, and ``out/summary.csv`` and ``summary.md``. A submission that fails in any way
    gets its report; nothing it does stops the others. Returns the reports in order.

    ``jobs`` submissions are graded at once, each in its own worker process; with ``cluster``
    (a Ray address), each is one task on that cluster instead. ``resume`` keeps
    the reports in ``out`` whose submission and problem are unchanged (by sha256). On Ctrl-C
    or SIGTERM every sandbox is killed, the finished reports and the summary are written, and
    :class:`~nnlab.grade.grader.GradingInterrupted` is raised.
    """
    from tqdm.auto import tqdm

    from nnlab.train import show_progress

    if cluster is None:
        sandbox.require(require_isolation)
    out = None if out is None else Path(out)
    paths = grader.expand([Path(p) for p in submissions])
    names = _unique([grader.submission_name(p) for p in paths])
    reports = {n: r for p, n in zip(paths, names) if (r := _finished(out if resume else None, problem, p, n))}
    todo = [(p, n) for p, n in zip(paths, names) if n not in reports]
    if cluster is None:
        grader.load_inputs(problem)  # a data problem is one line here, before any sandbox starts
    bar = tqdm(total=len(paths), initial=len(reports), desc=f"grading {problem.name}", unit="submission",
               disable=not (show_progress() if progress is None else progress))
    stop = threading.Event()
    if cluster is not None:
        stream = _clustered(problem, todo, cluster, require_isolation)
    elif jobs <= 1 or len(todo) <= 1:
        stream = _sequential(problem, todo, stop)
    else:
        stream = _pooled(problem, todo, jobs)
    try:
        for report in stream:
            reports[report["submission"]] = report
            if out is not None:
                write_report(report, out)
            bar.update(1)
    except KeyboardInterrupt:
        stop.set()
        with contextlib.suppress(Exception):
            stream.close()
        if out is not None:
            write_summary(problem, [reports[n] for n in names if n in reports], out, len(names) - len(reports))
        raise grader.GradingInterrupted(f"{len(reports)} of {len(names)} submission(s) graded") from None
    finally:
        bar.close()
    ordered = [reports[n] for n in names]
    if out is not None:
        write_summary(problem, ordered, out)
    return ordered
