"""Rendering engines. Each engine module draws a `TextLayout` and encodes the result."""

from __future__ import annotations

from collections.abc import Callable

from renderq.text_request import TextRequest
from worker.engines import imagemagick, pillow
from worker.layout import TextLayout

TextRenderer = Callable[[TextLayout, TextRequest], bytes]

TEXT_RENDERERS: dict[str, TextRenderer] = {
    "pillow": pillow.render_text,
    "imagemagick": imagemagick.render_text,
}
