"""Serve MathJax 3 from the built site instead of a CDN, so formulas render offline.

The files come from the ``django-static-mathjax`` wheel (MathJax 3.2.2, Apache-2.0; it
installs a plain ``mathjax`` package of static files and needs no Django). After the HTML
build, the CHTML bundle, its fonts and the TeX extensions it loads on demand are copied to
``_static/mathjax``; ``mathjax_path`` in ``_config.yml`` points there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y")


def _source() -> Path:
    import mathjax  # the django-static-mathjax wheel's static-files package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _copy(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    src, dest = _source(), Path(app.outdir) / "_static" / "mathjax"
    for part in PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, dest / part, dirs_exist_ok=True)
        elif s.is_file():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, dest / part)


def setup(app):
    _source()  # fail early, with an ImportError naming the package, if it is not installed
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
