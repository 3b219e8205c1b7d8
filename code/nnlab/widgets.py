"""Interactive figures that work in a static page: no kernel, no network, no CDN.

:func:`slider` packs a handful of small PNG frames (base64) into one HTML fragment with an
``<input type="range">``; a few lines of inline JavaScript swap the image when the slider
moves. The built book needs nothing but a browser to scrub through them.

Elements carry stable classes so that a browser test can find them: the root
``div.nnlab-slider``, the image ``img.nnlab-slider-img``, the range input
``input.nnlab-slider-input`` and the label ``span.nnlab-slider-label``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from collections.abc import Sequence

from IPython.display import HTML

MAX_FRAMES = 60

_SCRIPT = """(function () {
  var root = document.getElementById(%(id)s);
  if (!root || root.dataset.ready) { return; }
  root.dataset.ready = "1";
  var frames = JSON.parse(root.querySelector(".nnlab-slider-data").textContent);
  var img = root.querySelector(".nnlab-slider-img");
  var input = root.querySelector(".nnlab-slider-input");
  var label = root.querySelector(".nnlab-slider-label");
  function show(i) {
    img.src = "data:image/png;base64," + frames.images[i];
    label.textContent = frames.labels[i];
    input.setAttribute("aria-valuetext", frames.labels[i]);
  }
  input.addEventListener("input", function () { show(parseInt(input.value, 10)); });
  show(parseInt(input.value, 10));
})();"""


class SliderHTML(HTML):
    """An ``IPython.display.HTML`` slider that also offers one PNG frame.

    Front ends that render HTML show the slider; those that cannot (a LaTeX build, for
    instance) fall back to the PNG of the frame the slider starts on.
    """

    def __init__(self, data: str, fallback_png: bytes, frame_count: int) -> None:
        super().__init__(data)
        self.fallback_png = fallback_png
        self.frame_count = frame_count

    def _repr_png_(self) -> bytes:
        return self.fallback_png


def _png_bytes(frame, colors: int | None = None) -> bytes:
    """PNG bytes of a figure (saved, then closed) or of PNG bytes, optionally re-encoded with
    an adaptive palette of ``colors`` colours (about four times smaller for plots)."""
    if isinstance(frame, (bytes, bytearray)):
        if not bytes(frame[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError("a frame given as bytes must be a PNG image")
        png = bytes(frame)
    elif hasattr(frame, "savefig"):
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        frame.savefig(buf, format="png")
        plt.close(frame)
        png = buf.getvalue()
    else:
        raise TypeError(f"a frame must be a matplotlib Figure or PNG bytes, got {type(frame).__name__}")
    if colors:
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB")
        buf = io.BytesIO()
        image.quantize(colors, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        png = buf.getvalue()
    return png


def slider(frames: Sequence, labels: Sequence[str], *, start: int | None = None,
           alt: str = "", caption: str = "", width_px: int = 300,
           colors: int | None = 64) -> SliderHTML:
    """A self-contained HTML image slider.

    Args:
        frames: matplotlib figures (saved as PNG and closed) or PNG bytes.
        labels: one label per frame, shown beside the slider.
        start: index of the frame shown first (default: the last).
        alt: alternative text for the image.
        caption: optional text under the slider.
        width_px: displayed image width in CSS pixels.
        colors: re-encode every frame with an adaptive palette of this many colours to keep
            the page light (``None``: keep the frames as they are).

    Returns:
        A :class:`SliderHTML` (an ``IPython.display.HTML``).

    Raises:
        ValueError: for no frames, more than :data:`MAX_FRAMES`, a label count that does not
            match, or a ``start`` out of range.
    """
    if not frames:
        raise ValueError("a slider needs at least one frame")
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames: keep a page light, at most {MAX_FRAMES}")
    if len(labels) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(labels)} labels")
    start = len(frames) - 1 if start is None else start
    if not 0 <= start < len(frames):
        raise ValueError(f"start must index a frame, got {start}")
    pngs = [_png_bytes(f, colors) for f in frames]
    images = [base64.b64encode(p).decode("ascii") for p in pngs]
    labels = [str(label) for label in labels]
    digest = hashlib.sha256("\0".join(images + labels).encode()).hexdigest()[:12]
    root_id = f"nnlab-slider-{digest}"
    # "</" cannot end the script element early once escaped; base64 and labels are safe JSON
    payload = json.dumps({"images": images, "labels": labels}).replace("</", "<\\/")
    cap = f'<div class="nnlab-slider-caption">{html.escape(caption)}</div>' if caption else ""
    markup = (
        f'<div class="nnlab-slider" id="{root_id}" style="max-width:{width_px + 40}px">'
        f'<img class="nnlab-slider-img" alt="{html.escape(alt, quote=True)}" width="{width_px}" '
        f'style="display:block;max-width:100%;height:auto" '
        f'src="data:image/png;base64,{images[start]}">'
        f'<div style="display:flex;align-items:center;gap:0.6em;margin-top:0.3em">'
        f'<input class="nnlab-slider-input" type="range" min="0" max="{len(images) - 1}" '
        f'step="1" value="{start}" aria-label="frame" style="flex:1">'
        f'<span class="nnlab-slider-label" style="font-size:0.85em;min-width:14em">'
        f'{html.escape(labels[start])}</span></div>{cap}'
        f'<script type="application/json" class="nnlab-slider-data">{payload}</script>'
        f"<script>{_SCRIPT % {'id': json.dumps(root_id)}}</script></div>"
    )
    return SliderHTML(markup, pngs[start], len(images))
