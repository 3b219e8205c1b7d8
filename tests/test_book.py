"""The book: a strict build with no warnings, then every page in a real browser.

The build runs once per session (into the repository's ``_build``, reusing its execution
cache like ``make book``). The browser tests serve ``_build/html`` on 127.0.0.1 and drive
Debian's chromium through playwright; without a browser they skip, except under CI=true.

``NNLAB_BOOK_BUILD=DIR`` builds into ``DIR/_build`` instead (``jupyter-book build
--path-output DIR``, with that folder's own execution cache) and tests that site, leaving the
repository's ``_build`` alone: for checking a working copy while another build uses
``_build``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ["NNLAB_BOOK_BUILD"]).resolve() if os.environ.get("NNLAB_BOOK_BUILD") else ROOT
BUILD = OUTPUT / "_build"
HTML = BUILD / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def toc_pages() -> list[str]:
    """Document names in _toc.yml order (``book/intro``, ...)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


def run_build() -> str:
    """The strict build (once per session, through the ``build_log`` fixture of conftest.py)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    if OUTPUT == ROOT:
        subprocess.run([sys.executable, "-m", "nnlab.book", "prepare"], cwd=ROOT, check=True, env=env)
        where = []
    else:  # the same cache invalidation, for the execution cache of the given build folder
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from nnlab.book.build import prepare; prepare(Path(sys.argv[1]))", str(BUILD)],
                       cwd=ROOT, check=True, env=env)
        where = ["--path-output", str(OUTPUT)]
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", *where, "."], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=1800)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"book build failed:\n{log[-6000:]}"
    return log


def test_strict_build_has_no_warnings(build_log):
    problems = [line for line in build_log.splitlines() if re.search(r"WARNING|ERROR|Traceback", line)]
    assert not problems, "\n".join(problems[:30])
    for page in toc_pages():
        assert (HTML / f"{page}.html").is_file(), f"{page}.html was not built"


def test_no_output_shows_an_error(build_log):
    for page in toc_pages():
        html = (HTML / f"{page}.html").read_text()
        for marker in ("Traceback (most recent call last)", 'class="output traceback', "output stderr",
                       "ansi-red-fg", "{glue:"):
            assert marker not in html, f"{page}.html contains {marker!r}"


def test_every_declared_figure_shows_an_image(build_log):
    """Each figure a chapter declares (``mystnb: figure: name: fig-...``) is in the page with
    its image: a figure cell that produced no output would otherwise vanish silently."""
    missing = []
    for page in toc_pages():
        names = re.findall(r"^\s+name: (fig-[\w-]+)", (ROOT / f"{page}.md").read_text(), re.M)
        html = (HTML / f"{page}.html").read_text()
        for name in names:
            block = re.search(rf'id="{name}".*?</figure>', html, re.S)
            image = block and re.search(r'<img[^>]+src="([^"]+)"', block.group(0))
            if not image or not (HTML / page).parent.joinpath(unquote(image.group(1))).resolve().is_file():
                missing.append(f"{page}: {name}")
    assert not missing, "figures without an image:\n" + "\n".join(missing)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.links.append(a["src"])
        if tag == "link" and a.get("href"):
            self.links.append(a["href"])


def test_every_internal_link_resolves(build_log):
    """An offline link checker over the built HTML: files exist and #anchors are defined."""
    parsed: dict[Path, _Links] = {}

    def parse(path: Path) -> _Links:
        if path not in parsed:
            p = _Links()
            p.feed(path.read_text(errors="replace"))
            parsed[path] = p
        return parsed[path]

    broken = []
    for page in sorted(HTML.rglob("*.html")):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        for link in parse(page).links:
            url = urlparse(link)
            if url.scheme or link.startswith(("//", "mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(HTML)} -> {link}")
            elif url.fragment and target.suffix == ".html" and url.fragment not in parse(target).ids:
                broken.append(f"{page.relative_to(HTML)} -> {link} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken[:40])


# ---------------------------------------------------------------------------------------
# Browser tests


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    ctx.close()


def test_index_redirects_to_first_chapter(page, site):
    page.goto(site)
    page.wait_for_url(re.compile(r".*/book/intro\.html$"), timeout=15000)
    assert "Principles of Deep Networks" in page.title()


@pytest.mark.parametrize("doc", toc_pages())
def test_page_renders(page, site, doc):
    source = (ROOT / f"{doc}.md").read_text()
    page.goto(urljoin(site, f"{doc}.html"))
    page.wait_for_load_state("load")
    heading = page.locator("main h1").first.inner_text()
    assert heading.strip() and heading.strip().rstrip("#") in page.title()
    images = page.eval_on_selector_all(
        "main img", "els => els.map(e => [e.currentSrc || e.src, e.complete && e.naturalWidth > 0])")
    bad = [src for src, ok in images if not ok]
    assert not bad, f"images that did not decode on {doc}: {bad[:5]}"
    text = page.locator("main").inner_text()
    assert "Traceback" not in text and "Error" not in page.eval_on_selector_all(
        "main .output.stderr, main .output.traceback", "els => els.map(e => e.innerText).join(' ')")
    if "{glue:" in source:
        pasted = page.locator("main .pasted-text").count()
        assert pasted >= source.count("{glue:text}") // 2, f"glued values missing on {doc}"
    if "$$" in source or "{math}" in source or "$" in source:
        page.wait_for_function("() => !window.MathJax || !window.MathJax.startup || "
                               "document.querySelectorAll('mjx-container').length > 0", timeout=15000)
    assert not page.console_errors, f"console errors on {doc}: {page.console_errors}"


def test_search_finds_a_chapter_term(page, site):
    page.goto(urljoin(site, "search.html?q=normalisation"))
    page.wait_for_selector("#search-results li, .search li", timeout=20000)
    hits = page.locator("#search-results li a, .search li a").all_inner_texts()
    assert any("MNIST" in h for h in hits), hits


def test_exercise_solution_opens_on_click(page, site):
    page.goto(urljoin(site, "book/part2/data.html"))
    solution = page.locator(".solution").first
    body = solution.locator(".admonition-title ~ *").first if solution.locator(".admonition-title ~ *").count() \
        else solution
    assert solution.count() == 1 or page.locator(".solution").count() > 1
    hidden_before = not body.is_visible()
    page.locator(".solution .toggle-button, .solution .admonition-title").first.click()
    page.wait_for_timeout(500)
    assert hidden_before and body.is_visible()


def test_math_renders(page, site):
    page.goto(urljoin(site, "book/part2/budget.html"))
    page.wait_for_selector("mjx-container", timeout=20000)
    assert page.locator("mjx-container").count() > 0


# ---------------------------------------------------------------------------------------
# Reader-grade layout: equations, figures and tables fit the text column at a desktop width

_SETTLE = """async () => {
  // show what dropdowns and toggled admonitions hide, so that their content is measured too
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await document.fonts.ready;
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
}"""

_LAYOUT = """() => {
  const article = document.querySelector('main article') || document.querySelector('main');
  const cs = getComputedStyle(article);
  const columnRight = article.getBoundingClientRect().right - parseFloat(cs.paddingRight);
  const shown = e => e.getClientRects().length > 0;
  const label = e => (e.getAttribute('aria-label') || e.textContent || '').replace(/\\s+/g, ' ').slice(0, 60);
  const equations = [];
  for (const e of document.querySelectorAll('main mjx-container[display="true"]')) {
    if (!shown(e)) continue;
    for (const box of new Set([e, e.closest('div.math') || e.parentElement])) {
      if (box.scrollWidth > box.clientWidth + 1) {
        equations.push(`${label(e)}: ${box.scrollWidth}px of content in a ${box.clientWidth}px box`);
      }
    }
  }
  const images = [...document.querySelectorAll('main img')]
    .filter(i => shown(i) && i.naturalWidth > 200)
    .map(i => ({alt: (i.alt || i.src).slice(0, 60), natural: i.naturalWidth, shown: i.clientWidth,
                ratio: i.clientWidth / i.naturalWidth, figure: !!i.closest('figure')}));
  const tables = [...document.querySelectorAll('main table')].filter(shown).map(t => {
    const boxes = [t, t.closest('.pst-scrollable-table-container'), t.closest('div.cell_output')].filter(Boolean);
    const caption = t.querySelector(':scope > caption .caption-number');
    return {caption: caption ? caption.textContent.trim() : null,
            text: (t.querySelector('th, td') || t).textContent.trim().slice(0, 40),
            overflow: Math.max(t.getBoundingClientRect().right - columnRight,
                               ...boxes.map(b => b.scrollWidth - b.clientWidth))};
  });
  return {equations, images, tables};
}"""


def _layout(pg, url: str) -> dict:
    pg.goto(url)
    pg.wait_for_load_state("load")
    pg.evaluate(_SETTLE)
    pg.wait_for_timeout(300)  # let the revealed content lay out
    return pg.evaluate(_LAYOUT)


@pytest.mark.parametrize("doc", toc_pages())
def test_equations_figures_and_tables_fit_the_column(page, site, doc):
    """At 1280 px: no display equation wider than its box, no image shown at less than 60% of
    its drawn width (a figure's text would shrink with it), no table wider than the column."""
    found = _layout(page, urljoin(site, f"{doc}.html"))
    assert not found["equations"], f"equations wider than their box on {doc}:\n" + "\n".join(found["equations"])
    small = [f"{i['alt']}: {i['shown']}px of {i['natural']}px" for i in found["images"] if i["ratio"] < 0.6]
    assert not small, f"images shown at under 60% of their drawn width on {doc}:\n" + "\n".join(small)
    wide = [f"{t['text']}: {t['overflow']:.0f}px too wide" for t in found["tables"] if t["overflow"] > 1]
    assert not wide, f"tables wider than the text column on {doc}:\n" + "\n".join(wide)


@pytest.mark.parametrize("doc", toc_pages())
def test_figures_are_shown_at_their_drawn_size(page, site, doc):
    """Every figure is drawn for the column it appears in: shown at (nearly) the size it was
    drawn, so that its text appears at the font size the figure set."""
    found = _layout(page, urljoin(site, f"{doc}.html"))
    shrunk = [f"{i['alt']}: shown {i['shown']}px of {i['natural']}px ({i['ratio']:.2f})"
              for i in found["images"] if i["figure"] and i["ratio"] < 0.9]
    assert not shrunk, f"figures shrunk to the column on {doc}:\n" + "\n".join(shrunk)


@pytest.mark.parametrize("doc", toc_pages())
def test_tables_are_numbered_and_captioned_as_tables(page, site, doc):
    """Every table of a page carries a caption numbered as a table, never as a figure."""
    found = _layout(page, urljoin(site, f"{doc}.html"))
    bad = [t["text"] for t in found["tables"] if not (t["caption"] or "").startswith("Table")]
    assert not bad, f"tables without a 'Table N' caption on {doc}: {bad}"
    html = (HTML / f"{doc}.html").read_text()
    assert not re.search(r"<figure[^>]*>(?:(?!</figure>).)*<table", html, re.S), f"a table inside a figure on {doc}"


def test_figures_are_drawn_for_the_column(page, site):
    """``nnlab.plots.use_style`` draws a figure as wide as the column a 1280 px window gives it,
    with fonts of at least 10 px on screen."""
    import matplotlib.pyplot as plt

    from nnlab import plots

    page.goto(urljoin(site, "book/part2/depth_width.html"))
    page.wait_for_load_state("load")
    column = page.evaluate("""() => { const box = document.querySelector('main figure img').parentElement;
        const cs = getComputedStyle(box);
        return box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight); }""")
    with plt.rc_context():
        plots.use_style()
        width_px = plt.rcParams["figure.figsize"][0] * plt.rcParams["figure.dpi"]
        sizes = [plt.rcParams[k] for k in ("font.size", "axes.titlesize", "axes.labelsize", "legend.fontsize",
                                           "xtick.labelsize", "ytick.labelsize")]
    assert width_px == plots.TEXT_WIDTH * plots.DPI
    assert 0.9 * column <= width_px <= column, f"figures are {width_px:.0f}px wide, the column {column}px"
    assert all(isinstance(size, (int, float)) for size in sizes), sizes
    assert min(sizes) * plots.DPI / 72 >= 10, f"the smallest text is {min(sizes) * plots.DPI / 72:.1f}px"


@pytest.mark.parametrize("doc", toc_pages())
def test_phone_width_has_no_horizontal_scroll(browser, site, doc, tmp_path):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    pg = ctx.new_page()
    pg.goto(urljoin(site, f"{doc}.html"))
    pg.wait_for_load_state("load")
    pg.screenshot(path=str(tmp_path / "phone.png"), full_page=False)
    overflow = pg.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    ctx.close()
    assert overflow <= 1, f"{doc} scrolls horizontally by {overflow}px at 390px"


def test_download_buttons_offer_source_and_notebook(page, site):
    import json

    page.goto(urljoin(site, "book/part2/data.html"))
    hrefs = page.eval_on_selector_all(".dropdown-download-buttons a", "els => els.map(e => e.href)")
    sources = [h for h in hrefs if h.endswith(".md")]
    notebooks = [h for h in hrefs if h.endswith(".ipynb")]
    assert sources and notebooks, hrefs
    for href in sources:
        response = page.request.get(href)
        assert response.ok and "kernelspec" in response.text(), href
    for href in notebooks:
        response = page.request.get(href)
        assert response.ok, href
        nb = json.loads(response.text())
        assert nb["nbformat"] == 4 and any(c["cell_type"] == "code" for c in nb["cells"]), href
    # no launch or repository buttons without a real repository URL
    assert page.locator("a[href*='github.com/executablebooks'], a[href*='binder'], a[href*='colab']").count() == 0


@pytest.mark.parametrize("doc", ["book/part1/backprop", "book/part1/saturation"])
def test_slider_scrubs_through_training(page, site, doc):
    """The decision-boundary slider works in the static page: moving it changes the picture."""
    page.goto(urljoin(site, f"{doc}.html"))
    slider = page.locator(".nnlab-slider").first
    img = slider.locator(".nnlab-slider-img")
    before = img.get_attribute("src")
    label_before = slider.locator(".nnlab-slider-label").inner_text()
    slider.locator(".nnlab-slider-input").focus()
    page.keyboard.press("Home")
    page.wait_for_timeout(200)
    after = img.get_attribute("src")
    assert after != before and slider.locator(".nnlab-slider-label").inner_text() != label_before
    assert page.evaluate("(el) => el.complete && el.naturalWidth > 0", img.element_handle())


def test_first_page_offers_every_chapter_as_a_notebook(build_log):
    """The first page lists every notebook chapter, part by part, with a link to the
    notebook the site serves (``book/_ext/notebooks.py``)."""
    html = (HTML / "book/intro.html").read_text()
    listing = re.search(r'<div class="nnlab-notebooks">(.*?)</div>', html, re.S)
    assert listing, "no list of notebooks on the first page"
    hrefs = re.findall(r'href="\.\./_sources/([^"]+)\.ipynb" download', listing.group(1))
    chapters = [p for p in toc_pages()[1:] if "kernelspec:" in (ROOT / f"{p}.md").read_text()]
    assert hrefs == chapters, f"listed {hrefs}, expected {chapters}"
    assert all((HTML / "_sources" / f"{p}.ipynb").is_file() for p in chapters)
    assert "Part I. Principles" in listing.group(1) and "Part III. Convolutional networks" in listing.group(1)
