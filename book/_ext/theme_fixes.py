"""Small fixes to the HTML theme stack, so that pages load without console errors.

- sphinx-thebe and sphinx-togglebutton register their inline configuration scripts once per
  read phase, and the page template ends up with two copies; the second redeclares
  ``const THEBE_JS_URL`` and throws. After the build, repeated identical inline ``<script>``
  lines are removed from every page.
- pydata-sphinx-theme logs an error when ``default_mode`` is empty; the book is light by
  default (the reader's switch still works).
- sphinx-book-theme offers an ``.ipynb`` download only for ``.ipynb`` sources. Each MyST
  notebook chapter is also written as ``_sources/<page>.ipynb`` (via myst-nb's reader) and
  offered in the page's download menu next to the ``.md`` source.
"""

from __future__ import annotations

import re
from pathlib import Path

_INLINE = re.compile(r"^\s*<script>.*</script>\s*$")


def _page_context(app, pagename, templatename, context, doctree) -> None:
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def dedupe_inline_scripts(html: str) -> str:
    """Drop repeated identical one-line inline scripts, keeping the first of each."""
    seen: set[str] = set()
    out = []
    for line in html.splitlines(keepends=True):
        if _INLINE.match(line):
            key = line.strip()
            if key in seen:
                continue
            seen.add(key)
        out.append(line)
    return "".join(out)


_SOURCE_LINK = re.compile(r'<li><a href="(?P<href>[^"]+)\.md"[^>]*btn-download-source-button.*?</li>', re.S)


def add_notebook_link(html: str) -> str:
    """Add an ``.ipynb`` entry after the ``.md`` source entry of the download menu."""
    match = _SOURCE_LINK.search(html)
    if not match or 'btn-download-notebook-button' in html:
        return html
    item = (f'\n<li><a href="{match["href"]}.ipynb" download '
            'class="btn btn-sm btn-download-notebook-button dropdown-item" title="Download notebook file">'
            '<span class="btn__icon-container"><i class="fas fa-code"></i></span>'
            '<span class="btn__text-container">.ipynb</span></a></li>')
    return html[:match.end()] + item + html[match.end():]


def _write_notebooks(app) -> set[str]:
    import nbformat
    from myst_nb.core.read import read_myst_markdown_notebook

    written = set()
    for docname in app.env.found_docs:
        src = Path(app.srcdir) / f"{docname}.md"
        if not src.is_file():
            continue
        text = src.read_text(encoding="utf-8")
        if "kernelspec:" not in text:
            continue
        dest = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(read_myst_markdown_notebook(text), str(dest))
        written.add(docname)
    return written


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    notebooks = _write_notebooks(app)
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = dedupe_inline_scripts(text)
        docname = page.relative_to(app.outdir).with_suffix("").as_posix()
        if docname in notebooks:
            fixed = add_notebook_link(fixed)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
