"""The operations an image job applies, in order: their parameters and the rules for each.

Every operation is a small frozen dataclass. `parse_operations` reads the client's JSON array
into them (refusing unknown ops and bad parameters with the op's index and field), and
`Operation.to_json` writes the canonical form the worker parses again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

from renderq.colors import NAMED_COLORS, RGBA, to_hex
from renderq.errors import ErrorCode, InvalidRequest
from renderq.fonts import DEFAULT_FONT, FONT_FILES
from renderq.settings import Settings
from renderq.validation import FieldReader

FITS: Final = ("contain", "cover", "fill", "inside")
FLIP_DIRECTIONS: Final = ("horizontal", "vertical")
GRAVITIES: Final = (
    "northwest",
    "north",
    "northeast",
    "west",
    "center",
    "east",
    "southwest",
    "south",
    "southeast",
)
MAX_BLUR_RADIUS: Final = 50.0
MAX_SHARPEN_RADIUS: Final = 10.0


@dataclass(frozen=True)
class Resize:
    """Scale to a box: `contain` fits inside keeping aspect, `cover` fills it and centre-crops
    the overflow, `fill` stretches to exactly the box, `inside` is `contain` that never enlarges."""

    width: int | None
    height: int | None
    fit: str = "contain"
    op: str = "resize"


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    width: int
    height: int
    op: str = "crop"


@dataclass(frozen=True)
class Rotate:
    """Clockwise. Multiples of 90 are exact; other angles grow the canvas, filled with
    `background`."""

    degrees: float
    background: RGBA = NAMED_COLORS["transparent"]
    op: str = "rotate"

    @property
    def quarter_turns(self) -> int | None:
        """0 to 3 for a multiple of 90 degrees, None for any other angle."""
        turns = self.degrees / 90
        return int(turns) % 4 if turns.is_integer() else None


@dataclass(frozen=True)
class Flip:
    direction: str
    op: str = "flip"


@dataclass(frozen=True)
class Grayscale:
    op: str = "grayscale"


@dataclass(frozen=True)
class Blur:
    """Gaussian blur; `radius` is the standard deviation in px."""

    radius: float
    op: str = "blur"


@dataclass(frozen=True)
class Sharpen:
    """Unsharp mask of `radius` (standard deviation in px) at 150%, threshold 0."""

    radius: float
    op: str = "sharpen"


@dataclass(frozen=True)
class Adjust:
    """Linear per-channel change: `out = (in - 0.5) * (1 + contrast/100) + 0.5 + brightness/100`
    on values 0..1, so both engines apply exactly the same curve."""

    brightness: float = 0.0
    contrast: float = 0.0
    op: str = "adjust"


@dataclass(frozen=True)
class Watermark:
    """Text drawn by the text renderer, placed by `gravity` with `margin` px from the edges."""

    text: str
    font: str = DEFAULT_FONT
    size: int = 24
    color: RGBA = (255, 255, 255, 160)
    gravity: str = "southeast"
    margin: int = 10
    op: str = "watermark"


Operation = Resize | Crop | Rotate | Flip | Grayscale | Blur | Sharpen | Adjust | Watermark


def operation_to_json(operation: Operation) -> dict[str, Any]:
    """The canonical JSON form; colors become `#rrggbbaa`."""
    data = asdict(operation)
    for key in ("background", "color"):
        if key in data:
            data[key] = to_hex(data[key])
    return data


def parse_operations(data: object, settings: Settings) -> tuple[Operation, ...]:
    """Validate the client's `ops` array; errors name the op as `ops[i].field`."""
    if not isinstance(data, list):
        raise InvalidRequest(ErrorCode.INVALID_TYPE, "'ops' must be a JSON array", "ops")
    if len(data) > settings.max_operations:
        raise InvalidRequest(
            ErrorCode.OUT_OF_RANGE,
            f"at most {settings.max_operations} operations are allowed, got {len(data)}",
            "ops",
        )
    return tuple(_parse_operation(item, i, settings) for i, item in enumerate(data))


def _parse_operation(item: object, index: int, settings: Settings) -> Operation:
    prefix = f"ops[{index}]."
    if not isinstance(item, dict):
        raise InvalidRequest(
            ErrorCode.INVALID_TYPE, "each op must be a JSON object", f"ops[{index}]"
        )
    name = item.get("op")
    spec = _OPERATIONS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InvalidRequest(
            ErrorCode.UNKNOWN_OPERATION,
            f"unknown op {name!r}; known: {', '.join(_OPERATIONS)}",
            prefix + "op",
        )
    fields, parse = spec
    return parse(FieldReader(item, ("op", *fields), prefix), settings)


def _resize(f: FieldReader, s: Settings) -> Resize:
    op = Resize(
        width=f.integer("width", 1, s.max_input_width, None),
        height=f.integer("height", 1, s.max_input_height, None),
        fit=f.choice("fit", FITS, ErrorCode.INVALID_PARAMETER, "contain"),
    )
    both_needed = op.fit in ("cover", "fill")
    missing = "width" if op.width is None else "height"
    if both_needed and (op.width is None or op.height is None):
        raise InvalidRequest(
            ErrorCode.MISSING_FIELD, f"fit {op.fit!r} needs width and height", f.name(missing)
        )
    if op.width is None and op.height is None:
        raise InvalidRequest(
            ErrorCode.MISSING_FIELD, "resize needs width or height", f.name(missing)
        )
    return op


def _crop(f: FieldReader, s: Settings) -> Crop:
    return Crop(
        x=f.integer("x", 0, s.max_input_width - 1),
        y=f.integer("y", 0, s.max_input_height - 1),
        width=f.integer("width", 1, s.max_input_width),
        height=f.integer("height", 1, s.max_input_height),
    )


def _rotate(f: FieldReader, s: Settings) -> Rotate:
    return Rotate(
        degrees=f.number("degrees", -360, 360),
        background=f.color("background", NAMED_COLORS["transparent"], allow_transparent=True),
    )


def _flip(f: FieldReader, s: Settings) -> Flip:
    return Flip(f.choice("direction", FLIP_DIRECTIONS, ErrorCode.INVALID_PARAMETER))


def _grayscale(f: FieldReader, s: Settings) -> Grayscale:
    return Grayscale()


def _blur(f: FieldReader, s: Settings) -> Blur:
    return Blur(f.number("radius", 0.1, MAX_BLUR_RADIUS))


def _sharpen(f: FieldReader, s: Settings) -> Sharpen:
    return Sharpen(f.number("radius", 0.1, MAX_SHARPEN_RADIUS))


def _adjust(f: FieldReader, s: Settings) -> Adjust:
    return Adjust(
        brightness=f.number("brightness", -100, 100, 0.0),
        contrast=f.number("contrast", -100, 100, 0.0),
    )


def _watermark(f: FieldReader, s: Settings) -> Watermark:
    return Watermark(
        text=f.text("text", s.max_watermark_length, multiline=False),
        font=f.choice("font", FONT_FILES, ErrorCode.UNKNOWN_FONT, DEFAULT_FONT),
        size=f.integer("size", s.min_font_size, s.max_font_size, 24),
        color=f.color("color", (255, 255, 255, 160)),
        gravity=f.choice("gravity", GRAVITIES, ErrorCode.INVALID_PARAMETER, "southeast"),
        margin=f.integer("margin", 0, 1000, 10),
    )


_Parser = Callable[[FieldReader, Settings], Operation]

_OPERATIONS: Final[dict[str, tuple[tuple[str, ...], _Parser]]] = {
    "resize": (("width", "height", "fit"), _resize),
    "crop": (("x", "y", "width", "height"), _crop),
    "rotate": (("degrees", "background"), _rotate),
    "flip": (("direction",), _flip),
    "grayscale": ((), _grayscale),
    "blur": (("radius",), _blur),
    "sharpen": (("radius",), _sharpen),
    "adjust": (("brightness", "contrast"), _adjust),
    "watermark": (("text", "font", "size", "color", "gravity", "margin"), _watermark),
}

OPERATION_NAMES: Final = tuple(_OPERATIONS)
