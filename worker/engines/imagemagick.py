"""The ImageMagick engine, through Wand.

Text goes to ImageMagick only as a drawing primitive's string with explicit coordinates, and
colors only as numbers built here: no client string is parsed by ImageMagick.
"""

from __future__ import annotations

from wand.color import Color
from wand.drawing import Drawing
from wand.image import Image

from renderq.colors import RGBA
from renderq.formats import OPAQUE_FORMATS
from renderq.text_request import TextRequest
from worker.layout import TextLayout


def wand_color(rgba: RGBA) -> Color:
    r, g, b, a = rgba
    return Color(f"srgba({r},{g},{b},{a / 255:.4f})")


def render_text(layout: TextLayout, request: TextRequest) -> bytes:
    with Image(
        width=layout.width, height=layout.height, background=wand_color(request.background)
    ) as image:
        with Drawing() as draw:
            draw.font = layout.font_path
            draw.font_size = layout.size
            draw.fill_color = wand_color(request.color)
            draw.text_antialias = True
            for line in layout.lines:
                if line.text.strip():
                    draw.text(line.x, line.top + layout.ascent, line.text)
            draw(image)
        return encode(image, request.format)


def encode(image: Image, fmt: str) -> bytes:
    """Encode `image` without metadata; formats without alpha get it flattened onto white."""
    if fmt in OPAQUE_FORMATS:
        image.background_color = Color("white")
        image.alpha_channel = "remove"
    image.strip()
    image.depth = 8
    image.format = fmt
    blob: bytes = image.make_blob()
    return blob
