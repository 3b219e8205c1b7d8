"""A plain `jupyter-book build .` never serves chapters computed from older code or results:
the book's Sphinx extension (book/_ext/nnlab_inputs.py) clears the execution cache and has
every document read again at `builder-inited` when code/nnlab or results/ changed. Its hooks
are called here with a stand-in for Sphinx's application: no build runs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "book" / "_ext" / "nnlab_inputs.py"
RESULT = Path("results") / "mlp-100" / "result.json"


def load_extension():
    spec = importlib.util.spec_from_file_location("nnlab_inputs", EXTENSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def book(tmp_path):
    """A book whose inputs are a copy of one stored result and one package file, and a build
    folder whose execution cache holds one notebook."""
    root = tmp_path / "book"
    (root / RESULT).parent.mkdir(parents=True)
    shutil.copyfile(ROOT / RESULT, root / RESULT)
    (root / "code" / "nnlab").mkdir(parents=True)
    (root / "code" / "nnlab" / "train.py").write_text("EPOCHS = 40\n")
    app = SimpleNamespace(outdir=str(root / "_build" / "html"), srcdir=str(root),
                          config=SimpleNamespace(nb_execution_cache_path=""))
    return root, app


def cached(root: Path) -> Path:
    """Put one executed notebook in the execution cache; returns its file."""
    entry = root / "_build" / ".jupyter_cache" / "executed" / "intro.ipynb"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text("{}")
    return entry


ENV = SimpleNamespace(all_docs={"book/intro": 0, "book/part2/budget": 0})


def test_the_extension_is_registered_in_the_book_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"]["nnlab_inputs"] == "book/_ext"


def test_changed_results_clear_the_cache_and_every_chapter_executes_again(book):
    ext = load_extension()
    root, app = book
    entry = cached(root)
    ext.invalidate(app)  # a build folder never stamped: its cache may be from anything
    assert not entry.exists() and ext.outdated(app, ENV, set(), set(), set()) == sorted(ENV.all_docs)
    entry = cached(root)
    ext.invalidate(app)  # nothing changed: the cache serves the chapters
    assert entry.exists() and ext.outdated(app, ENV, set(), set(), set()) == []
    result = json.loads((root / RESULT).read_text())
    for run in result["runs"].values():
        run["test_acc"] = 0.5
    (root / RESULT).write_text(json.dumps(result))
    ext.invalidate(app)
    assert not entry.exists(), "a chapter cached with the old results would be served"
    assert ext.outdated(app, ENV, set(), set(), {"book/part2/budget"}) == ["book/intro"]


def test_changed_code_clears_the_configured_cache(book, tmp_path):
    ext = load_extension()
    root, app = book
    app.config.nb_execution_cache_path = str(tmp_path / "elsewhere")
    ext.invalidate(app)
    entry = tmp_path / "elsewhere" / "executed.ipynb"
    entry.parent.mkdir(parents=True)
    entry.write_text("{}")
    ext.invalidate(app)
    assert entry.exists()
    (root / "code" / "nnlab" / "train.py").write_text("EPOCHS = 41\n")
    ext.invalidate(app)
    assert not entry.exists() and ext.outdated(app, ENV, set(), set(), set())


def test_prepare_then_a_plain_build_reads_every_chapter_again(book):
    """`python -m nnlab.book prepare` (what `make book` runs first) stamps the new inputs, so
    the extension sees nothing new; prepare must itself make Sphinx read every chapter again,
    or a chapter whose source is unchanged keeps outputs computed from the old results."""
    from nnlab.book.build import refresh

    root, _ = book
    build = root / "_build"
    refresh(build, root=root)
    pickle = build / ".doctrees" / "environment.pickle"
    pickle.parent.mkdir(parents=True)
    pickle.write_bytes(b"saved environment")
    entry = cached(root)
    assert refresh(build, root=root) is None and pickle.exists() and entry.exists()  # nothing changed
    (root / "code" / "nnlab" / "train.py").write_text("EPOCHS = 41\n")
    assert refresh(build, root=root) == "changed"
    assert not entry.exists() and not pickle.exists()
