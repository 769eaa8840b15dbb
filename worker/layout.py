"""Text layout shared by both engines: wrapping, line positions and the canvas size.

Both engines draw the lines this module places, measured with FreeType through Pillow, so the
same request gives the same image size whichever engine draws it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from PIL import ImageFont

from renderq.errors import ErrorCode, InvalidRequest
from renderq.fonts import font_path
from renderq.settings import Settings
from renderq.text_request import TextRequest

TAB = "    "


@dataclass(frozen=True)
class PlacedLine:
    text: str
    x: int
    top: int  # y of the line's ascender; the baseline is `top + ascent`


@dataclass(frozen=True)
class TextLayout:
    width: int
    height: int
    font_path: str
    size: int
    ascent: int
    lines: tuple[PlacedLine, ...]


@lru_cache(maxsize=64)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # Pillow looks a missing font up by name in the system font folders; only the
    # allowlisted file itself may be used.
    if not os.path.isfile(path):
        raise FileNotFoundError(f"font file {path} is missing")
    return ImageFont.truetype(path, size)


def layout_text(request: TextRequest, settings: Settings) -> TextLayout:
    path = font_path(settings.font_dir, request.font)
    font = load_font(path, request.size)
    ascent, descent = font.getmetrics()
    padding = max(1, round(request.size * 0.25))
    wrap_at = None if request.width is None else max(1, request.width - 2 * padding)
    lines = _wrap(request.text.replace("\t", TAB), font, wrap_at)
    if len(lines) > settings.max_text_lines:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the text wraps to {len(lines)} lines; at most {settings.max_text_lines} are allowed",
            "text",
        )
    line_height = ascent + descent
    widest = max((font.getlength(line) for line in lines), default=0.0)
    width = request.width or int(widest + 0.999) + 2 * padding
    height = request.height or len(lines) * line_height + 2 * padding
    _check_canvas(width, height, settings)
    placed = tuple(
        PlacedLine(line, padding, padding + i * line_height) for i, line in enumerate(lines)
    )
    return TextLayout(width, height, path, request.size, ascent, placed)


def _wrap(text: str, font: ImageFont.FreeTypeFont, wrap_at: int | None) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        if wrap_at is None:
            lines.append(paragraph.rstrip())
        else:
            lines.extend(_wrap_paragraph(paragraph, font, wrap_at))
    return lines


def _wrap_paragraph(paragraph: str, font: ImageFont.FreeTypeFont, wrap_at: int) -> list[str]:
    """Greedy word wrap; a word wider than the line is broken between characters."""
    lines: list[str] = []
    current = ""
    for word in paragraph.split(" "):
        candidate = word if not current else f"{current} {word}"
        if font.getlength(candidate) <= wrap_at:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        for ch in word:
            if current and font.getlength(current + ch) > wrap_at:
                lines.append(current)
                current = ""
            current += ch
    lines.append(current)
    return lines


def _check_canvas(width: int, height: int, settings: Settings) -> None:
    if width > settings.max_width or height > settings.max_height:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the text needs {width}x{height} px; the limit is "
            f"{settings.max_width}x{settings.max_height}",
            "text",
        )
    if width * height > settings.max_pixels:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the text needs {width * height} pixels; the limit is {settings.max_pixels}",
            "text",
        )
