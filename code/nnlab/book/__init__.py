"""This book's own material, apart from the reusable core of ``nnlab``.

* :mod:`nnlab.book.experiments`: the catalogue of every network the book trains (named in
  the repository's ``[tool.nnlab]`` table; registers on import);
* :mod:`nnlab.book.problems`: the problem set's rules and the book's accuracy targets;
* the chapter analyses: :mod:`~nnlab.book.report`, :mod:`~nnlab.book.mlp_budget`,
  :mod:`~nnlab.book.cnn_report`, :mod:`~nnlab.book.bn_statistics` and
  :mod:`~nnlab.book.cnn_predictions` (stored analyses, see :mod:`nnlab.analyses`),
  :mod:`~nnlab.book.pooling`, :mod:`~nnlab.book.padding`,
  :mod:`~nnlab.book.relu_logic`, :mod:`~nnlab.book.mnist_facts`,
  :mod:`~nnlab.book.backprop_worked`, :mod:`~nnlab.book.initialisation`,
  :mod:`~nnlab.book.cnn_anatomy`, :mod:`~nnlab.book.invariance`,
  :mod:`~nnlab.book.saturation`, :mod:`~nnlab.book.dying_relu`;
* :mod:`nnlab.book.build`: the build's cache invalidation (``python -m nnlab.book prepare``).
* :mod:`nnlab.book.notebooks`: the chapters as downloadable notebooks, and what they say
  outside the repository.

Everything here imports the core; nothing in the core imports this package.
"""

from __future__ import annotations


def glue_many(**values) -> None:
    """``myst_nb.glue`` each keyword without displaying it."""
    try:
        from myst_nb import glue
    except ImportError as exc:
        raise ImportError("nnlab.book.glue_many needs myst-nb: install nnlab's `book` extra "
                          "(pip install \"nnlab-course[book] @ file:///path/to/nnlab_course-0.2.0-py3-none-any.whl\")") from exc

    for name, value in values.items():
        glue(name, value, display=False)
