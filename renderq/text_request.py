"""The text job: what a client may ask for, and the rules it must satisfy.

The front parses every request with `parse_text_request` before queueing it, and the worker
parses the stored copy again before rendering: the queue is never trusted. Each field is
declared once below, and `/openapi.json` is made from the same declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from renderq.colors import NAMED_COLORS, RGBA, to_hex
from renderq.engine_formats import check_writable
from renderq.errors import ErrorCode, InvalidRequest
from renderq.fields import Choice, Color, FieldReader, Integer, OptionalInteger, Text, field_names
from renderq.fonts import DEFAULT_FONT, FONT_FILES
from renderq.settings import Settings
from renderq.vocabulary import DEFAULT_ENGINE, DEFAULT_TEXT_FORMAT, ENGINES, OUTPUT_FORMATS

DEFAULT_FONT_SIZE: Final = 32
MISSING_GLYPH_ACTIONS: Final = ("refuse", "replace")

TEXT: Final = Text(
    "text",
    "the text to draw; newlines and tabs allowed, no other control characters, nothing that "
    "reads as ImageMagick syntax (a leading @, a coder prefix such as label:, %w escapes)",
    max_length=lambda s: s.max_text_length,
    multiline=True,
)
ENGINE: Final = Choice(
    "engine", "the renderer", ENGINES, ErrorCode.UNKNOWN_ENGINE, default=DEFAULT_ENGINE
)
FONT: Final = Choice(
    "font", "a font name from GET /fonts", FONT_FILES, ErrorCode.UNKNOWN_FONT, default=DEFAULT_FONT
)
SIZE: Final = Integer(
    "size",
    "font size in px",
    low=lambda s: s.min_font_size,
    high=lambda s: s.max_font_size,
    default=DEFAULT_FONT_SIZE,
)
COLOR: Final = Color("color", "the text's color", default=NAMED_COLORS["black"])
BACKGROUND: Final = Color(
    "background", "the canvas's color", allow_transparent=True, default=NAMED_COLORS["white"]
)
WIDTH: Final = OptionalInteger(
    "width",
    "canvas width in px; the text wraps at it (default: fit the text)",
    1,
    lambda s: s.max_width,
)
HEIGHT: Final = OptionalInteger(
    "height", "canvas height in px (default: fit the text)", 1, lambda s: s.max_height
)
FORMAT: Final = Choice(
    "format",
    "the image format; JPEG has no alpha, so a transparent background becomes white",
    OUTPUT_FORMATS,
    ErrorCode.UNKNOWN_FORMAT,
    default=DEFAULT_TEXT_FORMAT,
)
ON_MISSING_GLYPH: Final = Choice(
    "on_missing_glyph",
    "a character no shipped font has: `refuse` it (unsupported_character), or `replace` it with "
    "U+FFFD",
    MISSING_GLYPH_ACTIONS,
    ErrorCode.INVALID_PARAMETER,
    default="refuse",
)
TEXT_FIELDS: Final = (
    TEXT,
    ENGINE,
    FONT,
    SIZE,
    COLOR,
    BACKGROUND,
    WIDTH,
    HEIGHT,
    FORMAT,
    ON_MISSING_GLYPH,
)


@dataclass(frozen=True)
class TextRequest:
    text: str
    engine: str = DEFAULT_ENGINE
    font: str = DEFAULT_FONT
    size: int = DEFAULT_FONT_SIZE
    color: RGBA = NAMED_COLORS["black"]
    background: RGBA = NAMED_COLORS["white"]
    width: int | None = None
    height: int | None = None
    format: str = DEFAULT_TEXT_FORMAT
    on_missing_glyph: str = "refuse"

    def to_json(self) -> dict[str, Any]:
        """The canonical form stored in Redis; `parse_text_request` reads it back unchanged."""
        data: dict[str, Any] = {
            "text": self.text,
            "engine": self.engine,
            "font": self.font,
            "size": self.size,
            "color": to_hex(self.color),
            "background": to_hex(self.background),
            "format": self.format,
        }
        if self.on_missing_glyph != "refuse":
            data["on_missing_glyph"] = self.on_missing_glyph
        if self.width is not None:
            data["width"] = self.width
        if self.height is not None:
            data["height"] = self.height
        return data


def parse_text_request(data: object, settings: Settings) -> TextRequest:
    """Validate a decoded JSON body into a `TextRequest`, or raise `InvalidRequest`."""
    fields = FieldReader(data, field_names(TEXT_FIELDS))
    request = TextRequest(
        text=TEXT.read(fields, settings),
        engine=ENGINE.read(fields, settings),
        font=FONT.read(fields, settings),
        size=SIZE.read(fields, settings),
        color=COLOR.read(fields, settings),
        background=BACKGROUND.read(fields, settings),
        width=WIDTH.read(fields, settings),
        height=HEIGHT.read(fields, settings),
        format=FORMAT.read(fields, settings),
        on_missing_glyph=ON_MISSING_GLYPH.read(fields, settings),
    )
    check_writable(request.engine, request.format)
    if request.width and request.height and request.width * request.height > settings.max_pixels:
        raise InvalidRequest(
            ErrorCode.OUT_OF_RANGE,
            f"width x height must be at most {settings.max_pixels} pixels",
            "width",
        )
    return request
