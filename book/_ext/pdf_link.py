"""Offer the PDF of the book on the site, when one has been built (``make pdf``).

If ``_build/latex/book.pdf`` exists when the HTML is written, it is copied next to the site's
``index.html`` and the first page gets a link to it; otherwise nothing changes (no broken
link on a site built without TeX).
"""

from __future__ import annotations

import shutil
from pathlib import Path

LINK = ('<p class="nnlab-pdf"><a class="reference external" href="{href}" download>'
        "Download the whole book as a PDF</a> ({size:.1f} MB, built from the same sources as these pages).</p>\n")


def _pdf(app) -> Path | None:
    path = Path(app.outdir).parent / "latex" / "book.pdf"
    return path if app.builder.format == "html" and path.is_file() else None


def _page_context(app, pagename, templatename, context, doctree) -> None:
    pdf = _pdf(app)
    if pdf is not None and pagename == app.config.root_doc and "body" in context:
        depth = pagename.count("/")
        context["body"] = LINK.format(href="../" * depth + "book.pdf", size=pdf.stat().st_size / 1e6) + context["body"]


def _copy(app, exception) -> None:
    pdf = _pdf(app)
    if exception is None and pdf is not None:
        shutil.copyfile(pdf, Path(app.outdir) / "book.pdf")


def setup(app):
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
