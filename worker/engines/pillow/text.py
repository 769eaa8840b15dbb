"""The Pillow engine: text drawing and encoding."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

from renderq.colors import NAMED_COLORS, RGBA
from renderq.text_request import TextRequest
from renderq.vocabulary import OPAQUE_FORMATS
from worker.layout import PlacedLine, TextLayout, TextRun, emoji_layer, face_font

PIL_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "avif": "AVIF",
}


def draw_text(layout: TextLayout, color: RGBA, background: RGBA) -> Image.Image:
    """The laid-out text as an RGBA image."""
    size = (layout.width, layout.height)
    # Draw coverage into a mask, then composite the color through it: exact straight alpha
    # for every background, transparent ones included.
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    emoji: list[tuple[PlacedLine, TextRun]] = []
    for line in layout.lines:
        for run in line.runs:
            if run.face.strike:
                emoji.append((line, run))
                continue
            font = face_font(run.face, layout.size)
            direction = "rtl" if run.rtl else "ltr"
            xy = (run.x, line.baseline)
            draw.text(xy, run.text, font=font, fill=255, anchor="ls", direction=direction)
    *rgb, alpha = color
    ink = Image.new("RGBA", size, (*rgb, 0))
    ink.putalpha(mask.point(lambda v: v * alpha // 255))
    image = Image.alpha_composite(Image.new("RGBA", size, background), ink)
    for line, run in emoji:
        _draw_emoji(image, line, run, layout.size)
    return image


def _draw_emoji(image: Image.Image, line: PlacedLine, run: TextRun, size: int) -> None:
    """Colour emoji keep their own colours: the strike, scaled, over the text."""
    emoji = emoji_layer(run, size, line.baseline)
    layer = emoji.strike.resize(emoji.scaled, Image.Resampling.LANCZOS)
    x, y = emoji.at
    # alpha_composite refuses a destination left of or above the image: cut the layer there.
    left, top = max(0, -x), max(0, -y)
    if left < layer.width and top < layer.height:
        image.alpha_composite(layer, (x + left, y + top), (left, top))


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
