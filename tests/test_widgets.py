"""nnlab.widgets: a self-contained slider (no network), structure a browser test relies on."""

import base64
import json
import re

import matplotlib.pyplot as plt
import pytest
from IPython.display import HTML

from nnlab import widgets


def _figures(n):
    figs = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(1, 1), dpi=40)
        ax.plot([0, 1], [0, i])
        figs.append(fig)
    return figs


def test_slider_structure_and_frames():
    before = len(plt.get_fignums())
    figs = _figures(3)
    w = widgets.slider(figs, ["a", "b", "c<d"], alt="alt text")
    assert isinstance(w, HTML)
    assert len(plt.get_fignums()) == before        # figures were closed
    html = w.data
    for cls in ("nnlab-slider", "nnlab-slider-img", "nnlab-slider-input", "nnlab-slider-label"):
        assert f'class="{cls}"' in html
    assert 'type="range"' in html and 'max="2"' in html and 'value="2"' in html
    payload = re.search(r'class="nnlab-slider-data">(.*?)</script>', html, re.S).group(1)
    data = json.loads(payload)
    assert data["labels"] == ["a", "b", "c<d"]
    assert len(data["images"]) == 3
    for img in data["images"]:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "c&lt;d" in html                          # labels are escaped in markup
    assert w._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slider_needs_no_network():
    w = widgets.slider(_figures(2), ["x", "y"])
    assert not re.search(r"(src|href)=\"(https?:)?//", w.data)
    assert "http" not in w.data.replace("data:image/png;base64,", "")


def test_slider_accepts_png_bytes_and_checks_inputs():
    png = widgets._png_bytes(_figures(1)[0])
    w = widgets.slider([png, png], ["one", "two"], start=0)
    assert 'value="0"' in w.data
    with pytest.raises(ValueError):
        widgets.slider([png], ["one", "two"])
    with pytest.raises(ValueError):
        widgets.slider([b"not a png"], ["x"])
    with pytest.raises(ValueError):
        widgets.slider([], [])
    with pytest.raises(ValueError):
        widgets.slider([png], ["x"], start=3)
