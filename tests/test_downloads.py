"""A chapter downloaded as a notebook runs in an empty folder outside the repository, or says
how to make it run.

The notebooks are made as the site makes them (:func:`nnlab.book.notebooks.chapter_notebook`,
used by ``book/_ext/notebooks.py``) and executed by a Jupyter kernel in an empty temporary
folder, with no ``NNLAB_RESULTS`` and no ``[tool.nnlab]`` table in reach: Part I's
backpropagation chapter computes everything it shows; the pooling chapter reads stored runs,
stops with a message that says where they come from, and runs once the notebook follows it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nnlab.book.notebooks import chapter_notebook, message_outside_repository

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # each notebook starts a kernel and runs its chapter (about 20 s)


@pytest.fixture
def downloads(tmp_path, monkeypatch) -> Path:
    """An empty folder outside the repository, as the kernel's working folder, with no
    results store or experiment modules named in the environment."""
    folder = tmp_path / "Downloads"
    folder.mkdir()
    for name in ("NNLAB_RESULTS", "NNLAB_EXPERIMENTS"):
        monkeypatch.delenv(name, raising=False)
    assert not any(p.joinpath("pyproject.toml").is_file() for p in (folder, *folder.parents))
    return folder


def download(doc: str, folder: Path, first_cell: str | None = None) -> Path:
    """The chapter ``doc`` as the site offers it, saved in ``folder`` (with ``first_cell``
    as a code cell before the chapter's own, if given)."""
    import nbformat

    nb = chapter_notebook((ROOT / f"{doc}.md").read_text(encoding="utf-8"), title=doc)
    if first_cell is not None:
        nb.cells.insert(0, nbformat.v4.new_code_cell(first_cell))
    path = folder / f"{Path(doc).name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def execute(path: Path):
    """Run a notebook in its own folder; returns it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def test_downloaded_part1_chapter_runs_in_an_empty_folder(downloads):
    nb = execute(download("book/part1/backprop", downloads))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert nb.cells[1].cell_type == "markdown" and "NNLAB_RESULTS" in nb.cells[1].source  # the download note
    assert not (downloads / "results").exists()  # computed live: no store read or written


def test_downloaded_part3_chapter_says_where_its_results_come_from(downloads):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError) as failure:
        execute(download("book/part3/pooling", downloads))
    assert failure.value.ename == "MissingResult", str(failure.value)[-2000:]
    message = failure.value.evalue
    # the first stored thing the chapter reads: the feature-change analysis, then the runs
    assert "'pooling-feature-change'" in message or "'pooling-ablation'" in message
    assert "in no nnlab project" in message and "results/ folder" in message
    assert "%env NNLAB_RESULTS=/path/to/the/repository/results" in message
    assert "run `nnlab train pooling-ablation`" not in message  # cannot work where there is no catalogue


def test_downloaded_part3_chapter_runs_once_pointed_at_the_results(downloads, tmp_path):
    results = tmp_path / "repository" / "results"  # a copy: the chapter may write its caches
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns(".checkpoints", ".lock", "*.tmp*"))
    nb = execute(download("book/part3/pooling", downloads, first_cell=f"%env NNLAB_RESULTS={results}"))
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_appendix_shows_the_message_a_reader_gets(downloads):
    message = message_outside_repository("pooling-ablation", folder="~/Downloads")
    assert message.startswith("MissingResult: result of experiment 'pooling-ablation' is missing")
    assert "~/Downloads/results/pooling-ablation" in message and "NNLAB_RESULTS" in message
