"""Small fixes to the HTML theme stack, so that pages load without console errors.

- sphinx-thebe and sphinx-togglebutton register their inline configuration scripts once per
  read phase, and the page template ends up with two copies; the second redeclares
  ``const THEBE_JS_URL`` and throws. After the build, repeated identical inline ``<script>``
  lines are removed from every page.
- pydata-sphinx-theme logs an error when ``default_mode`` is empty; the book is light by
  default (the reader's switch still works).
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


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = dedupe_inline_scripts(text)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
