"""Never serve a chapter computed from older code or results, however the book is built.

jupyter-cache keys a notebook on its code cells only. At ``builder-inited`` this extension
hashes what the chapters read besides their cells (``code/nnlab``, ``results/`` and the
example course: :func:`nnlab.book.build.inputs_hash`) in the book being built; when the hash
differs from the one stamped in the build folder, it deletes the execution cache and has
Sphinx read every document again, so each chapter executes with the new inputs. A plain
``jupyter-book build .`` therefore behaves as ``make book`` does.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
CHANGED = "_nnlab_inputs_changed"


def build_folder(app) -> Path:
    """The build folder (``_build``): the parent of the builder's output, as myst-nb has it."""
    return Path(app.outdir).parent


def cache_folder(app) -> Path:
    """Where myst-nb keeps its execution cache (its own default when none is configured)."""
    configured = getattr(app.config, "nb_execution_cache_path", "")
    return Path(configured) if configured else build_folder(app) / ".jupyter_cache"


def invalidate(app) -> None:
    """``builder-inited``: clear the execution cache if the inputs changed since the last build."""
    from nnlab.book.build import refresh

    state = refresh(build_folder(app), root=Path(app.srcdir), cache=cache_folder(app),
                    doctrees=Path(app.doctreedir) if getattr(app, "doctreedir", None) else None)
    setattr(app, CHANGED, state is not None)
    if state == "changed":
        LOGGER.info("nnlab: code/nnlab or results/ changed since the last build: execution cache "
                    "cleared, every chapter is read and executed again")


def outdated(app, env, added, changed, removed) -> list[str]:
    """``env-get-outdated``: every document read before, when the inputs changed."""
    return sorted(set(env.all_docs) - set(removed)) if getattr(app, CHANGED, False) else []


def setup(app):
    app.connect("builder-inited", invalidate, priority=100)  # before myst-nb reads its cache
    app.connect("env-get-outdated", outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
