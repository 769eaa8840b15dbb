"""Strict readers for the fields of a JSON request object.

Each reader checks one field's type and range and raises `InvalidRequest` naming the field,
so every request schema is a short list of reads and the error codes stay uniform.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from renderq.colors import RGBA, parse_color
from renderq.errors import ErrorCode, InvalidRequest

REQUIRED: Final = object()

# Coder prefixes that make ImageMagick read, run or fetch something when a string is taken as
# an image name ("label:@/etc/passwd", "msl:x.msl", "ephemeral:..."). renderq never passes text
# that way, but refuses the shapes anyway, so one slip elsewhere cannot turn text into a file
# read.
_CODER_PREFIX: Final = re.compile(
    r"\s*(label|caption|text|txt|msl|mvg|svg|msvg|rsvg|ephemeral|url|https?|ftp|file|inline|"
    r"data|pango|vid|xc|canvas|gradient|radial-gradient|pattern|plasma|fractal|info|tmp|fd|"
    r"mpr|mpri|miff|magick|null|ps|eps|epi|ept|pdf|xps|pcl|histogram|clipboard|x|show|win|"
    r"print|scan|hald|dot|gv|stegano|tile|read|rgb|gray|cmyk|json|yaml|html|mat):",
    re.IGNORECASE,
)
# Percent escapes (`%w`, `%[exif:*]`) expand image properties where ImageMagick interprets text.
_PERCENT_ESCAPE: Final = re.compile(r"%[A-Za-z\[]")


def imagemagick_syntax(text: str) -> str | None:
    """Why `text` looks like ImageMagick syntax rather than text, or None when it does not."""
    if text.lstrip().startswith("@"):
        return "must not start with '@' (ImageMagick reads a file named by what follows)"
    prefix = _CODER_PREFIX.match(text)
    if prefix is not None:
        return f"must not start with the ImageMagick coder prefix {prefix.group(1)!r}:"
    if _PERCENT_ESCAPE.search(text):
        return "must not hold ImageMagick percent escapes such as '%w' or '%[...]'"
    return None


_WHOLE_NUMBER: Final = re.compile(r"[0-9]{1,9}")


def whole_number(text: str) -> int | None:
    """`text` as a whole number when it is 1 to 9 ASCII digits, else None.

    `str.isdigit` accepts "²" and other digits `int` cannot read, and `int` refuses more
    than 4300 digits: text from a query, a form or a header is checked with this instead.
    """
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


# Newline and tab are layout in a text; every other control character is refused, not drawn.
_LAYOUT_CONTROLS: Final = frozenset("\n\t")


class FieldReader:
    """Reads the fields of one JSON object; refuses fields that are not in `allowed`."""

    def __init__(self, data: object, allowed: Collection[str], prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise InvalidRequest(
                ErrorCode.INVALID_TYPE, "expected a JSON object", prefix.rstrip(".") or None
            )
        self._data: Mapping[str, Any] = data
        self._prefix = prefix
        for key in data:
            if key not in allowed:
                raise InvalidRequest(
                    ErrorCode.UNKNOWN_FIELD, f"unknown field {key!r}", self.name(str(key))
                )

    def name(self, key: str) -> str:
        """The field's name as the client sees it in an error, e.g. `ops[2].width`."""
        return f"{self._prefix}{key}"

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        """The field's value as decoded from JSON, for a nested reader to check; `default`
        only when the field is absent (an explicit null is passed on, to be refused)."""
        if key in self._data:
            return self._data[key]
        return self._raw(key, default)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise InvalidRequest(
                ErrorCode.INVALID_TYPE, f"{key!r} must be true or false", self.name(key)
            )
        return value

    def _raw(self, key: str, default: Any) -> Any:
        if key in self._data and self._data[key] is not None:
            return self._data[key]
        if default is REQUIRED:
            raise InvalidRequest(ErrorCode.MISSING_FIELD, f"{key!r} is required", self.name(key))
        return default

    def integer(self, key: str, low: int, high: int, default: Any = REQUIRED) -> Any:
        value = self._raw(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(
                ErrorCode.INVALID_TYPE, f"{key!r} must be an integer", self.name(key)
            )
        return self._in_range(key, value, low, high)

    def number(self, key: str, low: float, high: float, default: Any = REQUIRED) -> Any:
        value = self._raw(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(
                ErrorCode.INVALID_TYPE, f"{key!r} must be a number", self.name(key)
            )
        return self._in_range(key, float(value), low, high)

    def _in_range(self, key: str, value: Any, low: float, high: float) -> Any:
        if not low <= value <= high:
            raise InvalidRequest(
                ErrorCode.OUT_OF_RANGE,
                f"{key!r} must be between {low} and {high}, got {value}",
                self.name(key),
            )
        return value

    def string(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._raw(key, default)
        if value is not default and not isinstance(value, str):
            raise InvalidRequest(
                ErrorCode.INVALID_TYPE, f"{key!r} must be a string", self.name(key)
            )
        return value

    def text(self, key: str, max_length: int, multiline: bool) -> str:
        """Text to draw: not blank, not too long, valid Unicode, and no control characters
        but newlines and tabs where `multiline` allows them."""
        value: str = self.string(key)
        allowed = _LAYOUT_CONTROLS if multiline else frozenset()
        if not value.strip():
            raise InvalidRequest(
                ErrorCode.INVALID_TEXT, f"{key!r} must not be blank", self.name(key)
            )
        if len(value) > max_length:
            raise InvalidRequest(
                ErrorCode.TEXT_TOO_LONG,
                f"{key!r} must be at most {max_length} characters",
                self.name(key),
            )
        if any((ch < " " or ch == "\x7f") and ch not in allowed for ch in value):
            raise InvalidRequest(
                ErrorCode.INVALID_TEXT, f"{key!r} must not hold control characters", self.name(key)
            )
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise InvalidRequest(
                ErrorCode.INVALID_TEXT, f"{key!r} must be valid Unicode", self.name(key)
            )
        unsafe = imagemagick_syntax(value)
        if unsafe is not None:
            raise InvalidRequest(ErrorCode.UNSAFE_TEXT, f"{key!r} {unsafe}", self.name(key))
        return value

    def choice(
        self, key: str, choices: Collection[str], code: ErrorCode, default: Any = REQUIRED
    ) -> Any:
        value = self.string(key, default)
        if value is not default and value not in choices:
            listed = ", ".join(sorted(choices))
            raise InvalidRequest(
                code, f"{key!r} must be one of {listed}; got {value!r}", self.name(key)
            )
        return value

    def color(self, key: str, default: RGBA, allow_transparent: bool = False) -> RGBA:
        value = self.string(key, None)
        if value is None:
            return default
        rgba = parse_color(value)
        if rgba is None or (rgba[3] == 0 and not allow_transparent):
            raise InvalidRequest(
                ErrorCode.INVALID_COLOR,
                f"{key!r} must be #rgb, #rrggbb, #rrggbbaa or a color name; got {value!r}",
                self.name(key),
            )
        return rgba
