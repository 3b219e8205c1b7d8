"""Building the book: invalidate the execution cache when the package or the results change.

The book's Sphinx extension ``book/_ext/nnlab_inputs.py``, at the start of every build (a plain
``jupyter-book build .`` too), and ``python -m nnlab.book prepare`` delete the jupyter-cache
when the ``nnlab`` sources or the ``results/`` store changed since the last build. jupyter-cache keys a notebook on its
code cells only; a chapter whose cells are unchanged but whose package or results are new
would otherwise be served stale.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from nnlab.fileio import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[3]  # the repository: code/nnlab/book/build.py
# What the chapters read besides their own cells; the publishing workflow's cache key covers
# these too (tests/test_publish.py holds the two together).
INPUTS = ("code/nnlab", "results", "book/appendix/course_example")


def input_files(root: Path | None = None) -> list[Path]:
    """Every file :func:`inputs_hash` reads: under :data:`INPUTS` of ``root`` (the repository
    by default), without caches, locks, checkpoints and the temporary files of interrupted
    writes."""
    root = ROOT if root is None else root
    files = []
    for base in (root / name for name in INPUTS):
        for f in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = f.relative_to(root)
            if ("__pycache__" in rel.parts or ".checkpoints" in rel.parts or f.name == ".lock"
                    or f.name.endswith(".tmp")):  # debris of an interrupted write is no input
                continue
            files.append(f)
    return files


def inputs_hash(root: Path | None = None) -> str:
    """sha256 of every file under ``code/nnlab``, ``results`` and the example course that the
    reuse appendix runs (names and contents), in ``root`` (the repository by default)."""
    root = ROOT if root is None else root
    h = hashlib.sha256()
    for f in input_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def refresh(build_dir: Path, root: Path | None = None, cache: Path | None = None,
            doctrees: Path | None = None) -> str | None:
    """Clear the execution cache ``cache`` (``build_dir/.jupyter_cache`` by default) unless the
    inputs of ``root`` (the repository by default) hash as the stamp in ``build_dir`` records,
    and record their hash. Returns None when the inputs are unchanged, ``"changed"`` when they
    differ from the stamp and ``"unstamped"`` when there was no stamp.

    With the cache it deletes Sphinx's saved environment (``environment.pickle`` in
    ``doctrees``, ``build_dir/.doctrees`` by default), so the next build reads every chapter
    again even without ``--all``: a chapter whose source is unchanged would otherwise keep the
    outputs it was last executed with."""
    cache = build_dir / ".jupyter_cache" if cache is None else cache
    doctrees = build_dir / ".doctrees" if doctrees is None else doctrees
    stamp = build_dir / ".nnlab-inputs"
    new = inputs_hash(root)
    old = stamp.read_text().strip() if stamp.exists() else None
    if old == new:
        return None
    shutil.rmtree(cache, ignore_errors=True)
    (doctrees / "environment.pickle").unlink(missing_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stamp, (new + "\n").encode())
    return "unstamped" if old is None else "changed"


def prepare(build_dir: Path | None = None) -> bool:
    """Clear the execution cache and the saved environment in ``build_dir`` (the repository's
    ``_build`` by default) if the inputs changed; returns True if they were cleared, and then
    the next ``jupyter-book build .``, with or without ``--all``, executes every chapter.
    The book's Sphinx extension
    ``book/_ext/nnlab_inputs.py`` does the same inside every build."""
    return refresh(ROOT / "_build" if build_dir is None else build_dir) == "changed"


def main(argv: list[str]) -> int:
    if argv[:1] == ["prepare"]:
        if prepare():
            print("nnlab.book: code/nnlab or results/ changed: execution cache cleared")
        return 0
    print("usage: python -m nnlab.book prepare", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
