"""The book's stored analyses, registered for ``nnlab train`` and ``nnlab results check``.

Each module imported here registers, on import, the analyses it defines (``nnlab.analyses``):
analyses of the book's stored runs (batch-norm statistics, the final CNN's predictions) and
slow studies of chapters that read no stored run (``stored_*``). The repository's
``[tool.nnlab]`` table names this module after the experiment catalogue,
``nnlab.book.experiments``, so that the ``nnlab`` command finds both; the catalogue itself
does not import it, because these modules' computations read the chapter code, which reads
the catalogue.
"""

from __future__ import annotations

from nnlab.book import (  # noqa: F401  register their analyses
    bn_statistics,
    cnn_predictions,
    stored_dying_relu,
    stored_saturation,
    stored_studies,
)
