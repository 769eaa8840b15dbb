"""Request fields, declared once: name, type, range, default, error code and meaning.

A request schema is a tuple of fields. Each field reads its value from the client's JSON
object (refusing what breaks its rule with a stable code, naming the field) and describes
itself as JSON Schema, from which `/openapi.json` is built: the rule a client reads is the
rule the server applies, with the limits of the running settings.

JSON `null` is not a value of any field: a field is given, or left out for its default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar, cast

from renderq.colors import NAMED_COLORS, RGBA, parse_color, to_hex
from renderq.errors import ErrorCode, InvalidRequest
from renderq.settings import Settings
from renderq.validation import imagemagick_syntax

T = TypeVar("T")

# A bound or default that may depend on the settings (a limit an operator can change).
Setting = Callable[[Settings], T]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
_ABSENT: Final = object()

# Newline and tab are layout in a text; every other control character is refused, not drawn.
_LAYOUT_CONTROLS: Final = frozenset("\n\t")
_OPAQUE_NAMES: Final = tuple(name for name, rgba in NAMED_COLORS.items() if rgba[3])
_HEX_PATTERN: Final = "#([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})"


def _resolve(value: T | Setting[T], settings: Settings) -> T:
    return value(settings) if callable(value) else value


class FieldReader:
    """The fields of one JSON object; refuses any not in `allowed` (`unknown_field`)."""

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

    def get(self, key: str) -> Any:
        """The value as decoded from JSON, or `_ABSENT`."""
        return self._data.get(key, _ABSENT)


@dataclass(frozen=True)
class Field(Generic[T]):
    """One field: `read` its value from a request, or describe it with `schema`.

    Without a `default` the field is required; a default may depend on the settings.
    """

    name: str
    doc: str
    default: Any = field(default=REQUIRED, kw_only=True)

    def read(self, fields: FieldReader, settings: Settings) -> T:
        value = fields.get(self.name)
        if value is _ABSENT:
            return self.default_value(settings, fields)
        return self.check(value, fields.name(self.name), settings)

    def default_value(self, settings: Settings, fields: FieldReader) -> T:
        if isinstance(self.default, _Required):
            raise InvalidRequest(
                ErrorCode.MISSING_FIELD, f"{self.name!r} is required", fields.name(self.name)
            )
        return cast(T, _resolve(self.default, settings))

    def check(self, value: Any, name: str, settings: Settings) -> T:
        raise NotImplementedError

    @property
    def required(self) -> bool:
        return isinstance(self.default, _Required)

    def schema(self, settings: Settings) -> dict[str, Any]:
        schema: dict[str, Any] = {"description": self.doc}
        if not self.required and self.default is not None:
            schema["default"] = self.shown(_resolve(self.default, settings))
        return schema

    def shown(self, value: Any) -> Any:
        """A value as the JSON a client sends."""
        return value


def _type_error(name: str, expected: str) -> InvalidRequest:
    return InvalidRequest(ErrorCode.INVALID_TYPE, f"{name!r} must be {expected}", name)


def _range_error(name: str, low: float, high: float, value: float) -> InvalidRequest:
    return InvalidRequest(
        ErrorCode.OUT_OF_RANGE, f"{name!r} must be between {low} and {high}, got {value}", name
    )


@dataclass(frozen=True)
class Integer(Field[int]):
    low: int | Setting[int] = 0
    high: int | Setting[int] = 0

    def check(self, value: Any, name: str, settings: Settings) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, "an integer")
        low, high = _resolve(self.low, settings), _resolve(self.high, settings)
        if not low <= value <= high:
            raise _range_error(name, low, high, value)
        return value

    def schema(self, settings: Settings) -> dict[str, Any]:
        return {
            **super().schema(settings),
            "type": "integer",
            "minimum": _resolve(self.low, settings),
            "maximum": _resolve(self.high, settings),
        }


@dataclass(frozen=True)
class OptionalInteger(Field[int | None]):
    """An integer that may be left out, meaning "none given" (a size to fit)."""

    low: int | Setting[int] = 0
    high: int | Setting[int] = 0
    default: Any = field(default=None, kw_only=True)

    def check(self, value: Any, name: str, settings: Settings) -> int | None:
        return Integer(self.name, self.doc, self.low, self.high).check(value, name, settings)

    def schema(self, settings: Settings) -> dict[str, Any]:
        return Integer(self.name, self.doc, self.low, self.high).schema(settings)


@dataclass(frozen=True)
class Number(Field[float]):
    low: float = 0.0
    high: float = 0.0

    def check(self, value: Any, name: str, settings: Settings) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(name, "a number")
        if not self.low <= value <= self.high:
            raise _range_error(name, self.low, self.high, value)
        return float(value)

    def schema(self, settings: Settings) -> dict[str, Any]:
        return {
            **super().schema(settings),
            "type": "number",
            "minimum": self.low,
            "maximum": self.high,
        }


@dataclass(frozen=True)
class Flag(Field[bool]):
    default: Any = field(default=False, kw_only=True)

    def check(self, value: Any, name: str, settings: Settings) -> bool:
        if not isinstance(value, bool):
            raise _type_error(name, "true or false")
        return value

    def schema(self, settings: Settings) -> dict[str, Any]:
        return {**super().schema(settings), "type": "boolean"}


@dataclass(frozen=True)
class Choice(Field[str]):
    """One of a fixed set of names; anything else is `code` (unknown_font, ...)."""

    choices: Collection[str] = ()
    code: ErrorCode = ErrorCode.INVALID_PARAMETER

    def check(self, value: Any, name: str, settings: Settings) -> str:
        if not isinstance(value, str):
            raise _type_error(name, "a string")
        if value not in self.choices:
            listed = ", ".join(sorted(self.choices))
            raise InvalidRequest(
                self.code, f"{name!r} must be one of {listed}; got {value!r}", name
            )
        return value

    def schema(self, settings: Settings) -> dict[str, Any]:
        return {**super().schema(settings), "type": "string", "enum": sorted(self.choices)}


@dataclass(frozen=True)
class OptionalChoice(Field[str | None]):
    """A choice that may be left out, meaning "decided from the input" (its format)."""

    choices: Collection[str] = ()
    code: ErrorCode = ErrorCode.INVALID_PARAMETER
    default: Any = field(default=None, kw_only=True)

    def check(self, value: Any, name: str, settings: Settings) -> str | None:
        return self._choice().check(value, name, settings)

    def schema(self, settings: Settings) -> dict[str, Any]:
        return self._choice().schema(settings)

    def _choice(self) -> Choice:
        return Choice(self.name, self.doc, self.choices, self.code)


@dataclass(frozen=True)
class Color(Field[RGBA]):
    """`#rgb`, `#rrggbb`, `#rrggbbaa` or a name (in any case); parsed to numbers here, so no
    client string reaches ImageMagick's color parser."""

    allow_transparent: bool = False
    default: Any = field(default=NAMED_COLORS["black"], kw_only=True)

    def check(self, value: Any, name: str, settings: Settings) -> RGBA:
        if not isinstance(value, str):
            raise _type_error(name, "a string")
        rgba = parse_color(value)
        if rgba is None or (rgba[3] == 0 and not self.allow_transparent):
            raise InvalidRequest(
                ErrorCode.INVALID_COLOR,
                f"{name!r} must be #rgb, #rrggbb, #rrggbbaa or a color name; got {value!r}",
                name,
            )
        return rgba

    def schema(self, settings: Settings) -> dict[str, Any]:
        names = (*_OPAQUE_NAMES, "transparent") if self.allow_transparent else _OPAQUE_NAMES
        # JSON Schema patterns take no flags: each name matches in any case letter by letter.
        any_case = ("".join(f"[{c}{c.upper()}]" for c in name) for name in names)
        return {
            **super().schema(settings),
            "type": "string",
            "pattern": f"^({_HEX_PATTERN}|{'|'.join(any_case)})$",
        }

    def shown(self, value: Any) -> Any:
        names = [name for name, rgba in NAMED_COLORS.items() if rgba == value]
        return names[0] if names else to_hex(value)


@dataclass(frozen=True)
class Text(Field[str]):
    """Text to draw: not blank, not too long, valid Unicode, no control characters but
    newlines and tabs where `multiline`, and nothing that reads as ImageMagick syntax."""

    max_length: int | Setting[int] = 0
    multiline: bool = False

    def check(self, value: Any, name: str, settings: Settings) -> str:
        if not isinstance(value, str):
            raise _type_error(name, "a string")
        max_length = _resolve(self.max_length, settings)
        allowed = _LAYOUT_CONTROLS if self.multiline else frozenset()
        if not value.strip():
            raise InvalidRequest(ErrorCode.INVALID_TEXT, f"{name!r} must not be blank", name)
        if len(value) > max_length:
            raise InvalidRequest(
                ErrorCode.TEXT_TOO_LONG, f"{name!r} must be at most {max_length} characters", name
            )
        if any((ch < " " or ch == "\x7f") and ch not in allowed for ch in value):
            raise InvalidRequest(
                ErrorCode.INVALID_TEXT, f"{name!r} must not hold control characters", name
            )
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise InvalidRequest(ErrorCode.INVALID_TEXT, f"{name!r} must be valid Unicode", name)
        unsafe = imagemagick_syntax(value)
        if unsafe is not None:
            raise InvalidRequest(ErrorCode.UNSAFE_TEXT, f"{name!r} {unsafe}", name)
        return value

    def schema(self, settings: Settings) -> dict[str, Any]:
        return {
            **super().schema(settings),
            "type": "string",
            "minLength": 1,
            "maxLength": _resolve(self.max_length, settings),
        }


def object_schema(fields: tuple[Field[Any], ...], settings: Settings) -> dict[str, Any]:
    """The JSON Schema of an object made of `fields`, and nothing else."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [field.name for field in fields if field.required],
        "properties": {field.name: field.schema(settings) for field in fields},
    }


def field_names(fields: tuple[Field[Any], ...]) -> tuple[str, ...]:
    return tuple(field.name for field in fields)
