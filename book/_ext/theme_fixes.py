"""Small fixes to the HTML theme stack, so that pages load without console errors.

- sphinx-thebe and sphinx-togglebutton register their inline configuration scripts once per
  read phase, and the page template ends up with two copies; the second redeclares
  ``const THEBE_JS_URL`` and throws. After the build, repeated identical inline ``<script>``
  lines are removed from every page.
- pydata-sphinx-theme logs an error when ``default_mode`` is empty; the book is light by
  default (the reader's switch still works).
- Accessibility: the hidden-cell toggles, the search field and the colour-mode button get
  accessible names that contain their visible text, and the bibliography's entries a role
  that a list may hold (see ``_A11Y``). Every page is checked with axe-core in the tests.
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


# Accessibility (axe-core's WCAG 2 A/AA rules, run on every page by tests/test_accessibility.py):
# a control's accessible name must contain its visible text (WCAG 2.5.3), and a list's items
# must have a role a list may hold (doc-biblioentry is deprecated, so its entries counted as
# bare links).
_A11Y = (
    # myst-nb's hidden-cell toggles are named "Toggle hidden content" while they show
    # "Show code cell source": the visible text names them.
    (re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>"),
    # the search field shows "Search Ctrl+K" but is named "Search": its text names it
    (re.compile(r'(<button class="btn search-button-field[^"]*"[^>]*?) aria-label="Search"'), r"\1"),
    # the colour-mode button is named "Color mode" while its icons' titles ("Light", ...),
    # which Font Awesome turns into <title> text, name the mode: the icons lose their titles
    (re.compile(r'(<i class="theme-switch [^"]*" data-mode="\w+")\s+title="[^"]*"'), r'\1 aria-hidden="true"'),
    (re.compile(r'role="doc-biblioentry"'), 'role="listitem"'),
)


def accessible(html: str) -> str:
    """The page with the accessibility fixes above applied."""
    for pattern, replacement in _A11Y:
        html = pattern.sub(replacement, html)
    return html


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = accessible(dedupe_inline_scripts(text))
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
