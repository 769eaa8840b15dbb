"""The ImageMagick engine, through Wand: text drawing and encoding.

Text goes to ImageMagick only as a drawing primitive's string with explicit coordinates, and
colors only as numbers built here: no client string is parsed by ImageMagick.
"""

from __future__ import annotations

from wand.color import Color
from wand.drawing import Drawing
from wand.image import Image

from renderq.colors import RGBA
from renderq.text_request import TextRequest
from renderq.vocabulary import OPAQUE_FORMATS
from worker.layout import TextLayout


def wand_color(rgba: RGBA) -> Color:
    r, g, b, a = rgba
    return Color(f"srgba({r},{g},{b},{a / 255:.4f})")


def draw_text(layout: TextLayout, color: RGBA, background: RGBA) -> Image:
    """The laid-out text as a new Wand image; the caller closes it."""
    image = Image(width=layout.width, height=layout.height, background=wand_color(background))
    with Drawing() as draw:
        draw.font = layout.font_path
        draw.font_size = layout.size
        draw.fill_color = wand_color(color)
        draw.text_antialias = True
        for line in layout.lines:
            if line.text.strip():
                draw.text(line.x, line.top + layout.ascent, line.text)
        draw(image)
    return image


def render_text(layout: TextLayout, request: TextRequest) -> bytes:
    with draw_text(layout, request.color, request.background) as image:
        image.strip()
        return encode(image, request.format)


def encode(image: Image, fmt: str, quality: int | None = None) -> bytes:
    """Encode `image` in 8 bits; formats without alpha get it flattened onto white."""
    if fmt in OPAQUE_FORMATS:
        image.background_color = Color("white")
        image.alpha_channel = "remove"
    if quality is not None:
        image.compression_quality = quality
    image.depth = 8
    image.format = fmt
    blob: bytes = image.make_blob()
    return blob
