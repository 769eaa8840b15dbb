"""The Pillow engine: text drawing and encoding."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

from renderq.colors import NAMED_COLORS, RGBA
from renderq.text_request import TextRequest
from renderq.vocabulary import OPAQUE_FORMATS
from worker.layout import TextLayout, load_font

PIL_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
}


def draw_text(layout: TextLayout, color: RGBA, background: RGBA) -> Image.Image:
    """The laid-out text as an RGBA image."""
    size = (layout.width, layout.height)
    # Draw coverage into a mask, then composite the color through it: exact straight alpha
    # for every background, transparent ones included.
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    font = load_font(layout.font_path, layout.size)
    for line in layout.lines:
        draw.text((line.x, line.top), line.text, font=font, fill=255)
    *rgb, alpha = color
    ink = Image.new("RGBA", size, (*rgb, 0))
    ink.putalpha(mask.point(lambda v: v * alpha // 255))
    return Image.alpha_composite(Image.new("RGBA", size, background), ink)


def render_text(layout: TextLayout, request: TextRequest) -> bytes:
    return encode(draw_text(layout, request.color, request.background), request.format)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """Encode `image` with Pillow `options`; formats without alpha get it flattened onto white."""
    if fmt in OPAQUE_FORMATS and image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", image.size, NAMED_COLORS["white"])
        image = Image.alpha_composite(flat, rgba).convert("RGB")
    out = io.BytesIO()
    image.save(out, format=PIL_FORMATS[fmt], **options)
    return out.getvalue()
