"""Book build time: a clean build and a no-op rebuild, into a temporary output folder; or the
execution time of every chapter, from the result store.

Usage::

    python benchmarks/book_build.py [--out DIR] [--keep] [--dry-run] [--toc FILE]
    python benchmarks/book_build.py --chapters [--out DIR] [--only PAGE ...]

``--chapters`` executes every notebook page of the table of contents as a build does, with
no execution cache: the page is read as myst-nb reads it and run by ``nbclient`` in a fresh
``python3`` kernel started in the page's folder, one page after another, and timed from the
kernel's start to its shutdown (what jupyter-cache records as a page's execution time). The
per-page seconds, the slowest cells of each page, the total and the machine's load go to
``--out``/book_chapters-cpu.json (default ``benchmarks/records``), written atomically; the
README's table is :func:`markdown_table` of that record. A page that raises is recorded
with its error, and the script exits with status 1. Before the pages, a page of one cell that
only imports what the chapters import (``FLOOR_SOURCE``) is timed the same way: the floor every
executed page pays for its kernel and imports, recorded as ``floor``.

Runs, from the repository root and with its ``_config.yml`` and ``_toc.yml``:

1. a clean build, ``jupyter-book build --all --path-output TMP .``: TMP is a fresh temporary
   folder, so there is no execution cache and every chapter executes;
2. a no-op rebuild of the same output, ``jupyter-book build --path-output TMP .``: nothing
   changed, so Sphinx should read nothing and jupyter-cache should execute nothing.

The repository's own ``_build/`` is not touched. Both builds run with ``PYTHONHASHSEED=0``
(without it Sphinx's environment pickles differ between runs and every page is re-read)
and ``MPLBACKEND=Agg``. The timings, the number of notebooks executed in each build (from
myst-nb's log) and the exit codes go to ``--out``/book_build.json, written atomically.
A clean build executes every chapter and takes minutes of CPU: run it on purpose, not
from the tests (``--dry-run`` prints the commands and exits; ``--toc FILE`` times a
partial book). A build that fails (a chapter raising, e.g. because a stored result is
missing) is recorded with its exit code and the log's warning and error lines, and the
script exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "out"
OUT_NAME = "book_build.json"
CHAPTERS_NAME = "book_chapters-cpu.json"
PROBLEM = re.compile(r"WARNING|ERROR|Error:|failed")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CHANGES = re.compile(r"(\d+) added, (\d+) changed, (\d+) removed")


def jupyter_book() -> str:
    """The ``jupyter-book`` next to this interpreter, else the one on PATH."""
    local = Path(sys.executable).parent / "jupyter-book"
    return str(local) if local.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def build_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    shared = ROOT.parent / "shared" / "data"
    if "NNLAB_DATA" not in env and (shared / "MNIST" / "raw").is_dir():
        env["NNLAB_DATA"] = str(shared)  # as the Makefile does
    return env


def commands(output: Path, toc: Path | None = None) -> dict[str, list[str]]:
    jb = jupyter_book()
    extra = ["--toc", str(toc)] if toc else []
    return {"clean": [jb, "build", "--all", "--path-output", str(output), *extra, "."],
            "noop": [jb, "build", "--path-output", str(output), *extra, "."]}


def timed_build(cmd: list[str], env: dict[str, str], timeout: float) -> dict:
    """Run one build; returns seconds, exit code, notebooks executed and the log's tail."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    log = ANSI.sub("", proc.stdout + proc.stderr)
    lines = log.splitlines()
    changes = CHANGES.search(log)
    return {"seconds": seconds, "returncode": proc.returncode,
            "notebooks_executed": sum("Executed notebook in" in line for line in lines),
            "notebooks_from_cache": sum("Using cached notebook" in line for line in lines),
            "documents_read": int(changes[1]) + int(changes[2]) if changes else None,
            "warnings": sum("WARNING" in line for line in lines),
            "problems": [line for line in lines if PROBLEM.search(line)][:20], "log_tail": log[-3000:]}


def toc_pages(toc: Path | None = None) -> list[str]:
    """Document names of the table of contents, in its order (``book/intro``, ...)."""
    import yaml

    data = yaml.safe_load(((ROOT / "_toc.yml") if toc is None else toc).read_text())
    pages = [data["root"]]
    for part in data.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


def notebook(page: str):
    """The page as myst-nb reads it (None for a page with no code cells)."""
    from myst_nb.core.read import read_myst_markdown_notebook

    text = (ROOT / f"{page}.md").read_text()
    nb = read_myst_markdown_notebook(text) if text.startswith("---\njupytext:") else None
    return nb if nb is not None and any(c.cell_type == "code" for c in nb.cells) else None


def _cell_seconds(cell) -> float | None:
    from datetime import datetime

    t = cell.get("metadata", {}).get("execution", {})
    start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = [datetime.fromisoformat(x.replace("Z", "+00:00")) for x in (start, end)]
    return (parse[1] - parse[0]).total_seconds()


# the kernel's CPU seconds and those of the processes it ran and waited for (a grading sandbox)
CPU_PROBE = ("import resource as _r\n_u = [_r.getrusage(w) for w in (_r.RUSAGE_SELF, _r.RUSAGE_CHILDREN)]\n"
             "print('nnlab-cpu-seconds', sum(u.ru_utime + u.ru_stime for u in _u))")


# what nearly every page imports first: a page that does only this costs the floor of a page
FLOOR_SOURCE = ("import numpy, pandas, scipy.stats, torch\nimport matplotlib.pyplot as plt\n"
                "from myst_nb import glue\nfrom nnlab import plots\nplots.use_style()\nglue('x', 1, display=False)")


def time_page(page: str, timeout: float) -> dict | None:
    """Execute one page from the store; seconds, its three slowest cells, any error."""
    nb = notebook(page)
    return None if nb is None else time_notebook(nb, ROOT / page, timeout)


def time_floor(timeout: float) -> dict:
    """A page whose one cell imports what the chapters import (``FLOOR_SOURCE``): the cost of
    a fresh kernel and its imports, which every executed page pays before its own work."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FLOOR_SOURCE)])
    return time_notebook(nb, ROOT / "book" / "intro", timeout)


def time_notebook(nb, page: Path, timeout: float) -> dict:
    """Execute a notebook in a fresh kernel in ``page``'s folder, as a build does."""
    import nbformat
    from nbclient import NotebookClient

    nb.cells.append(nbformat.v4.new_code_cell(CPU_PROBE))  # the kernel's own CPU seconds, at the end
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(page.parent)}})
    t0 = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as exc:  # a chapter that raises: recorded, not fatal to the others
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:500]
    seconds = time.perf_counter() - t0
    probe = nb.cells.pop()
    cpu = next((float(o["text"].split()[-1]) for o in probe.get("outputs", []) if o.get("name") == "stdout"), None)
    cells = [(c, _cell_seconds(c)) for c in nb.cells if c.cell_type == "code"]
    slow = sorted(((sec, c.source.strip().splitlines()[0][:80] if c.source.strip() else "") for c, sec in cells
                   if sec is not None), reverse=True)[:3]
    return {"seconds": seconds, "cpu_seconds": cpu, "cells": len(cells), "slowest_cells": [{"seconds": a, "first_line": b} for a, b in slow],
            "error": error}


def time_chapters(pages: list[str], timeout: float) -> dict:
    """Every page timed, in order; the record's fields."""
    env = build_env()
    os.environ.update({k: env[k] for k in ("PYTHONHASHSEED", "MPLBACKEND") if k in env})
    if "NNLAB_DATA" in env:
        os.environ["NNLAB_DATA"] = env["NNLAB_DATA"]
    floor = time_floor(timeout)
    print(f"  a page that only imports: {floor['seconds']:.1f} s", flush=True)
    timed = {}
    for page in pages:
        r = time_page(page, timeout)
        if r is None:
            continue
        timed[page] = r
        print(f"  {page}: {r['seconds']:.1f} s" + (f"  FAILED: {r['error']}" if r["error"] else ""), flush=True)
    return {"benchmark": "book_chapters", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "pages": timed, "order": list(timed), "total_seconds": sum(r["seconds"] for r in timed.values()),
            "total_cpu_seconds": sum(r["cpu_seconds"] or 0.0 for r in timed.values()),
            "failed": sorted(p for p, r in timed.items() if r["error"]),
            "floor": {k: floor[k] for k in ("seconds", "cpu_seconds", "error")}, "floor_source": FLOOR_SOURCE}


def markdown_table(record: dict) -> str:
    """The README's table of a ``--chapters`` record: seconds per page and in all."""
    rows = ["| page | cells | execution, wall (s) | kernel CPU (s) | slowest cell (s) |", "|---|---:|---:|---:|---:|"]
    for page in record.get("order", record["pages"]):  # the table of contents' order
        r = record["pages"][page]
        slow = f"{r['slowest_cells'][0]['seconds']:.1f}" if r["slowest_cells"] else ""
        cpu = "" if r["cpu_seconds"] is None else f"{r['cpu_seconds']:.1f}"
        failed = " (failed)" if r["error"] else ""
        rows.append(f"| `{page}`{failed} | {r['cells']} | {r['seconds']:.1f} | {cpu} | {slow} |")
    rows.append(f"| **all {len(record['pages'])} pages** | | **{record['total_seconds']:.0f}** | "
                f"**{record['total_cpu_seconds']:.0f}** | |")
    floor = record.get("floor")
    if floor and floor.get("cpu_seconds") is not None:
        n = len(record["pages"])
        rows.append(f"| a page that only imports, once | 1 | {floor['seconds']:.1f} | {floor['cpu_seconds']:.1f} | |")
        rows.append(f"| the same, {n} times | | {n * floor['seconds']:.0f} | {n * floor['cpu_seconds']:.0f} | |")
    return "\n".join(rows)


def chapters_main(args) -> int:
    from nnlab.fileio import atomic_write_json

    pages = args.only or toc_pages(args.toc)
    print(f"executing {len(pages)} page(s) from the store, one fresh kernel each", flush=True)
    record = time_chapters(pages, args.timeout)
    out = (args.out or ROOT / "benchmarks" / "records") / CHAPTERS_NAME
    atomic_write_json(out, record)
    print(f"wrote {out}")
    print(f"every page executed in {record['total_seconds']:.1f} s ({record['total_cpu_seconds']:.1f} s of "
          f"kernel CPU; load average {record['load_average_end'][0]:.1f} at the end)")
    return 1 if record["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for {OUT_NAME} (default benchmarks/out) or, with --chapters, "
                             f"{CHAPTERS_NAME} (default benchmarks/records)")
    parser.add_argument("--chapters", action="store_true",
                        help="time the execution of every page from the store instead of two builds")
    parser.add_argument("--only", nargs="+", metavar="PAGE", help="with --chapters: these pages only (book/intro ...)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary build folder")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds allowed per build, or per page with --chapters (default 3600)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("--toc", type=Path, default=None,
                        help="another table of contents (a partial build; default: the repository's _toc.yml)")
    args = parser.parse_args(argv)

    if args.chapters and not args.dry_run:
        return chapters_main(args)
    args.out = args.out or DEFAULT_OUT
    if args.dry_run:
        for name, cmd in commands(Path("<TMP>"), args.toc).items():
            print(f"{name}: (cd {ROOT} && PYTHONHASHSEED=0 {' '.join(cmd)})")
        return 0

    from nnlab.results import atomic_write_json

    output = Path(tempfile.mkdtemp(prefix="nnlab-book-build-"))
    env = build_env()
    runs = {}
    try:
        for name, cmd in commands(output, args.toc).items():
            print(f"{name} build: {' '.join(cmd)}", flush=True)
            runs[name] = timed_build(cmd, env, args.timeout)
            r = runs[name]
            print(f"  {r['seconds']:.1f} s, exit code {r['returncode']}, {r['documents_read']} documents "
                  f"read, {r['notebooks_executed']} notebooks executed, {r['notebooks_from_cache']} from "
                  f"the cache, {r['warnings']} warnings", flush=True)
            if r["returncode"] != 0:
                print("\n".join(r["problems"]) or r["log_tail"], file=sys.stderr)
                print(f"the {name} build failed: no timing for the rest", file=sys.stderr)
                break
    finally:
        if args.keep:
            print(f"kept {output}")
        else:
            shutil.rmtree(output, ignore_errors=True)

    record = {"benchmark": "book_build", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "cpu_count": os.cpu_count(),
              "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
              "toc": str(args.toc) if args.toc else "_toc.yml",
              "commands": commands(Path("<TMP>"), args.toc), "builds": runs}
    out = args.out / OUT_NAME
    atomic_write_json(out, record)
    print(f"wrote {out}")
    ok = all(r["returncode"] == 0 for r in runs.values()) and len(runs) == 2
    if ok:
        print(f"clean build: {runs['clean']['seconds']:.1f} s")
        print(f"no-op rebuild: {runs['noop']['seconds']:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
