"""Every chapter as a Jupyter notebook: written into the site, offered on every page and on
the first.

sphinx-book-theme offers an ``.ipynb`` download only for ``.ipynb`` sources. After the HTML
build, each MyST notebook chapter is also written as ``_sources/<page>.ipynb`` (by
:func:`nnlab.book.notebooks.chapter_notebook`: myst-nb's reader, with a first cell that says
what the notebook needs outside the repository) and offered in the page's download menu next
to the ``.md`` source. The directive ``{notebook-downloads}`` lists all of them, part by
part in the order of ``_toc.yml``, with a download link each; it shows on HTML pages only (a
PDF has no files beside it).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def is_notebook(app, docname: str) -> bool:
    """A MyST notebook chapter: a ``.md`` source with a kernelspec."""
    src = Path(app.srcdir) / f"{docname}.md"
    return src.is_file() and "kernelspec:" in src.read_text(encoding="utf-8")


class notebook_downloads(nodes.General, nodes.Element):
    """Placeholder for the list, filled in when every document's title is known."""


class NotebookDownloads(SphinxDirective):
    """``{notebook-downloads}``: every notebook chapter of the book, with a download link."""

    def run(self) -> list[nodes.Node]:
        return [notebook_downloads()]


def _parts(app) -> list[tuple[str, list[str]]]:
    """(caption, documents) of the root document's toctrees, in order."""
    from sphinx import addnodes

    root = app.env.get_doctree(app.config.root_doc)
    return [(tree.get("caption") or "", [doc for _, doc in tree["entries"]])
            for tree in root.findall(addnodes.toctree)]


def _listing(app, fromdoc: str) -> str:
    up = "../" * fromdoc.count("/")
    out = ['<div class="nnlab-notebooks">']
    for caption, docs in _parts(app):
        docs = [d for d in docs if d in app.env.titles and is_notebook(app, d)]
        if not docs:
            continue
        out.append(f'<p class="nnlab-notebooks-part">{html.escape(caption)}</p>\n<ul>')
        for doc in docs:
            title = html.escape(app.env.titles[doc].astext())
            number = ".".join(map(str, app.env.toc_secnumbers.get(doc, {}).get("", ())))
            label = f"{number}. {title}" if number else title
            out.append(f'<li><a class="reference download" href="{up}_sources/{doc}.ipynb" download>'
                       f'{label}</a> <span class="nnlab-notebook-file">({Path(doc).name}.ipynb)</span></li>')
        out.append("</ul>")
    out.append("</div>")
    return "\n".join(out)


def _fill(app, doctree, docname: str) -> None:
    for node in list(doctree.findall(notebook_downloads)):
        if app.builder.format == "html":
            node.replace_self(nodes.raw("", _listing(app, docname), format="html"))
        else:
            node.replace_self([])


_SOURCE_LINK = re.compile(r'<li><a href="(?P<href>[^"]+)\.md"[^>]*btn-download-source-button.*?</li>', re.S)


def add_notebook_link(page: str) -> str:
    """Add an ``.ipynb`` entry after the ``.md`` source entry of a page's download menu."""
    match = _SOURCE_LINK.search(page)
    if not match or 'btn-download-notebook-button' in page:
        return page
    item = (f'\n<li><a href="{match["href"]}.ipynb" download '
            'class="btn btn-sm btn-download-notebook-button dropdown-item" title="Download notebook file">'
            '<span class="btn__icon-container"><i class="fas fa-code"></i></span>'
            '<span class="btn__text-container">.ipynb</span></a></li>')
    return page[:match.end()] + item + page[match.end():]


def _write_notebooks(app) -> set[str]:
    import nbformat

    from nnlab.book.notebooks import chapter_notebook

    written = set()
    for docname in app.env.found_docs:
        if not is_notebook(app, docname):
            continue
        dest = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        title = app.env.titles[docname].astext() if docname in app.env.titles else None
        text = (Path(app.srcdir) / f"{docname}.md").read_text(encoding="utf-8")
        nbformat.write(chapter_notebook(text, title=title, book=app.config.project), str(dest))
        written.add(docname)
    return written


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for docname in _write_notebooks(app):
        page = Path(app.outdir) / f"{docname}.html"
        if page.is_file():
            text = page.read_text(encoding="utf-8")
            linked = add_notebook_link(text)
            if linked != text:
                page.write_text(linked, encoding="utf-8")


def setup(app):
    app.add_node(notebook_downloads)
    app.add_directive("notebook-downloads", NotebookDownloads)
    app.connect("doctree-resolved", _fill)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
