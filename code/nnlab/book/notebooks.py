"""The book's chapters as downloadable notebooks, and what they say outside the repository.

The site offers every chapter as ``_sources/<page>.ipynb`` (the local Sphinx extension
``book/_ext/notebooks.py`` writes them with :func:`chapter_notebook`). A downloaded chapter
runs anywhere ``nnlab`` and its ``book`` extra are installed; one that reads stored training
results needs the repository's ``results/`` folder, and says so when it is not found
(:func:`message_outside_repository` shows the message a reader gets).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

HEADER = (
    "This notebook is {chapter} of *{book}*. It runs where the book's package `nnlab` is installed "
    "with its `book` extra (see the README of the book's repository). A chapter that reads stored "
    "training results finds them in the repository's `results/` folder: open the notebook inside "
    "the repository, or point `NNLAB_RESULTS` at that folder before the first code cell, for "
    "instance with a cell `%env NNLAB_RESULTS=/path/to/the/repository/results`. The appendix "
    "*Reproducing every result* says where every result comes from and how to retrain it."
)


def chapter_notebook(text: str, *, title: str | None = None, book: str = "Principles of Deep Networks"):
    """The notebook of a MyST notebook chapter (its ``.md`` text), as the site offers it: the
    chapter's cells, with a first markdown cell (after the title, if the chapter starts with
    one) saying what the notebook needs outside the repository.

    Returns:
        An ``nbformat`` notebook (version 4).
    """
    import nbformat
    from myst_nb.core.read import read_myst_markdown_notebook

    nb = read_myst_markdown_notebook(text)
    chapter = f"the chapter “{title}”" if title else "a chapter"
    header = nbformat.v4.new_markdown_cell(HEADER.format(book=book, chapter=chapter))
    header.metadata["tags"] = ["nnlab-download-note"]
    first = nb.cells[0] if nb.cells else None
    at = 1 if first is not None and first.cell_type == "markdown" and first.source.lstrip().startswith("# ") else 0
    nb.cells.insert(at, header)
    return nb


@contextlib.contextmanager
def _outside_any_project() -> Iterator[str]:
    """Work in a fresh empty folder with no ``NNLAB_RESULTS`` or ``NNLAB_EXPERIMENTS``, as a
    reader does who downloaded a notebook; the folder, the working directory and the
    environment are restored on exit."""
    saved = {k: os.environ.pop(k) for k in ("NNLAB_RESULTS", "NNLAB_EXPERIMENTS") if k in os.environ}
    here = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="nnlab-download-") as folder:
            os.chdir(folder)
            try:
                yield os.path.realpath(folder)
            finally:
                os.chdir(here)
    finally:
        os.environ.update(saved)


def message_outside_repository(experiment: str, *, folder: str = "~/Downloads") -> str:
    """The error a downloaded chapter stops with when it reads the stored result of
    ``experiment`` in an empty folder outside the repository, as ``Class: message``, with the
    temporary folder it ran in written as ``folder``."""
    from nnlab import results as store
    from nnlab.book import experiments  # noqa: F401  (registers the book's experiments)

    with _outside_any_project() as where:
        try:
            store.load(experiment)
        except store.ResultError as exc:
            return f"{type(exc).__name__}: {exc}".replace(where, folder)
    raise RuntimeError(f"experiment {experiment!r} loaded outside the repository; expected it to be missing")
