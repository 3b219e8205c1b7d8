"""Every built page passes axe-core's WCAG 2 A and AA rules with no serious or critical
violation: as it loads, and again with its hidden cells and solutions opened.

axe-core comes from the npm registry, pinned by ``tests/axe/package-lock.json``
(``npm ci --prefix tests/axe``; ``.ci/run`` does it). Without it these tests skip, except
under CI=true. The site and the browser are conftest's ``site`` and ``browser`` (the strict
build of test_book, served on 127.0.0.1, and Debian's chromium).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urljoin

import pytest
from test_book import HTML, toc_pages

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING = ("serious", "critical")
# Sphinx's own pages, beside the chapters
PAGES = [*toc_pages(), "genindex", "py-modindex", "search"]

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map(v => ({rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 160)}))}));
}"""

_READY = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await document.fonts.ready;
}"""

# Open what a reader can open: hidden cells (<details>) and sphinx-togglebutton solutions,
# through the events the page reacts to.
_OPEN = """() => {
  document.querySelectorAll('main details').forEach(d => { d.open = true; });
  document.querySelectorAll('main .toggle-button.toggle-button-hidden').forEach(b => b.click());
}"""

# Opened content fades in (CSS transitions): axe measures colours once every finite animation
# has finished, not half-way through a fade.
_SETTLED = """async () => {
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  await Promise.all(document.getAnimations()
    .filter(a => a.effect && a.effect.getComputedTiming().endTime !== Infinity)
    .map(a => a.finished.catch(() => null)));
}"""

# The theme makes scrollable blocks focusable (tabindex 0) after a debounce: wait until it has.
_SCROLLABLE_FOCUSABLE = """() => [...document.querySelectorAll(
    'pre, .cell_output > .output, .pst-scrollable-table-container')]
  .filter(e => e.getClientRects().length && (e.scrollWidth > e.clientWidth || e.scrollHeight > e.clientHeight))
  .every(e => e.tabIndex === 0)"""


@pytest.fixture(scope="module")
def axe_script() -> Path:
    if not AXE_JS.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"axe-core is not installed at {AXE_JS}; run `npm ci --prefix tests/axe`")
        pytest.skip("axe-core is not installed (npm ci --prefix tests/axe)")
    return AXE_JS


def serious_violations(pg, axe_js: Path) -> dict[tuple[str, str], str]:
    """axe-core's serious and critical violations on the page as it is now:
    (rule, element's CSS selector) -> the rule's impact and help, and the element's HTML."""
    if not pg.evaluate("() => typeof window.axe !== 'undefined'"):
        pg.add_script_tag(path=str(axe_js))
    return {(v["rule"], n["target"]): f"{v['impact']}: {v['help']}: {n['html']!r}"
            for v in pg.evaluate(_RUN, TAGS) if v["impact"] in FAILING for n in v["nodes"]}


@pytest.mark.parametrize("doc", PAGES)
def test_page_has_no_serious_accessibility_violation(browser, site, axe_script, doc):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    assert (HTML / f"{doc}.html").is_file(), f"{doc}.html was not built"
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    try:
        pg.goto(urljoin(site, f"{doc}.html"))
        pg.wait_for_load_state("load")
        pg.evaluate(_READY)
        loaded = serious_violations(pg, axe_script)
        pg.evaluate(_OPEN)
        pg.evaluate(_SETTLED)
        try:
            pg.wait_for_function(_SCROLLABLE_FOCUSABLE, timeout=10000)
        except PlaywrightTimeout:  # axe names the blocks left out of the tab order
            pass
        opened = serious_violations(pg, axe_script)
    finally:
        ctx.close()
    found = [f"{doc}: {rule} on {target} ({what})" for (rule, target), what in loaded.items()]
    found += [f"{doc}, hidden content opened: {rule} on {target} ({what})"
              for (rule, target), what in opened.items() if (rule, target) not in loaded]
    assert not found, (f"{len(found)} serious or critical accessibility violation(s) (axe-core, WCAG 2 A/AA):\n"
                       + "\n".join(found[:30]))
