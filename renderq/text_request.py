"""The text job: what a client may ask for, and the rules it must satisfy.

The front parses every request with `parse_text_request` before queueing it, and the worker
parses the stored copy again before rendering: the queue is never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from renderq.colors import NAMED_COLORS, RGBA, to_hex
from renderq.errors import ErrorCode, InvalidRequest
from renderq.fonts import DEFAULT_FONT, FONT_FILES
from renderq.settings import Settings
from renderq.validation import FieldReader
from renderq.vocabulary import DEFAULT_ENGINE, DEFAULT_TEXT_FORMAT, ENGINES, OUTPUT_FORMATS

DEFAULT_FONT_SIZE: Final = 32

TEXT_FIELDS: Final = (
    "text",
    "engine",
    "font",
    "size",
    "color",
    "background",
    "width",
    "height",
    "format",
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

    def to_json(self) -> dict[str, Any]:
        """The canonical form stored in Redis; `parse_text_request` reads it back unchanged."""
        return {
            "text": self.text,
            "engine": self.engine,
            "font": self.font,
            "size": self.size,
            "color": to_hex(self.color),
            "background": to_hex(self.background),
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }


def parse_text_request(data: object, settings: Settings) -> TextRequest:
    """Validate a decoded JSON body into a `TextRequest`, or raise `InvalidRequest`."""
    fields = FieldReader(data, TEXT_FIELDS)
    request = TextRequest(
        text=fields.text("text", settings.max_text_length, multiline=True),
        engine=fields.choice("engine", ENGINES, ErrorCode.UNKNOWN_ENGINE, DEFAULT_ENGINE),
        font=fields.choice("font", FONT_FILES, ErrorCode.UNKNOWN_FONT, DEFAULT_FONT),
        size=fields.integer(
            "size", settings.min_font_size, settings.max_font_size, DEFAULT_FONT_SIZE
        ),
        color=fields.color("color", NAMED_COLORS["black"]),
        background=fields.color("background", NAMED_COLORS["white"], allow_transparent=True),
        width=fields.integer("width", 1, settings.max_width, None),
        height=fields.integer("height", 1, settings.max_height, None),
        format=fields.choice(
            "format", OUTPUT_FORMATS, ErrorCode.UNKNOWN_FORMAT, DEFAULT_TEXT_FORMAT
        ),
    )
    if request.width and request.height and request.width * request.height > settings.max_pixels:
        raise InvalidRequest(
            ErrorCode.OUT_OF_RANGE,
            f"width x height must be at most {settings.max_pixels} pixels",
            "width",
        )
    return request
