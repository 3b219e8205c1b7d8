"""Book build time: a clean build and a no-op rebuild, into a temporary output folder.

Usage::

    python benchmarks/book_build.py [--out DIR] [--keep] [--dry-run] [--toc FILE]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for {OUT_NAME} (default benchmarks/out)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary build folder")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per build (default 3600)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("--toc", type=Path, default=None,
                        help="another table of contents (a partial build; default: the repository's _toc.yml)")
    args = parser.parse_args(argv)

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
