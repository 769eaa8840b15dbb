"""The Pillow engine."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from renderq.colors import NAMED_COLORS
from renderq.formats import OPAQUE_FORMATS
from renderq.text_request import TextRequest
from worker.layout import TextLayout, load_font

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}


def render_text(layout: TextLayout, request: TextRequest) -> bytes:
    size = (layout.width, layout.height)
    # Draw coverage into a mask, then composite the color through it: exact straight alpha
    # for every background, transparent ones included.
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    font = load_font(layout.font_path, layout.size)
    for line in layout.lines:
        draw.text((line.x, line.top), line.text, font=font, fill=255)
    *rgb, alpha = request.color
    ink = Image.new("RGBA", size, (*rgb, 0))
    ink.putalpha(mask.point(lambda v: v * alpha // 255))
    image = Image.alpha_composite(Image.new("RGBA", size, request.background), ink)
    return encode(image, request.format)


def encode(image: Image.Image, fmt: str) -> bytes:
    """Encode RGBA `image`; formats without alpha get it flattened onto white."""
    if fmt in OPAQUE_FORMATS:
        flat = Image.new("RGBA", image.size, NAMED_COLORS["white"])
        image = Image.alpha_composite(flat, image).convert("RGB")
    out = io.BytesIO()
    image.save(out, format=_PIL_FORMATS[fmt])
    return out.getvalue()
