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
from renderq.fields import (
    Choice,
    Color,
    Field,
    FieldReader,
    Integer,
    Number,
    OptionalInteger,
    Text,
    field_names,
    object_schema,
)
from renderq.fonts import DEFAULT_FONT
from renderq.settings import Settings
from renderq.text_request import FONT

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
    the overflow, `fill` stretches to exactly the box, `inside` is `contain` that never enlarges.
    `contain` and `inside` take either dimension alone (`Resize(width=256)`)."""

    width: int | None = None
    height: int | None = None
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
    """The canonical JSON form; colors become `#rrggbbaa`, and a field the client left out
    stays out (the worker validates this form again, and null is not a value)."""
    data = {key: value for key, value in asdict(operation).items() if value is not None}
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
    spec = OPERATIONS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InvalidRequest(
            ErrorCode.UNKNOWN_OPERATION,
            f"unknown op {name!r}; known: {', '.join(OPERATIONS)}",
            prefix + "op",
        )
    fields = FieldReader(item, ("op", *field_names(spec.fields)), prefix)
    return spec.build(fields, settings)


def operations_schema(settings: Settings) -> dict[str, Any]:
    """JSON Schema of the `ops` array, from the same declarations the parser reads."""
    variants = []
    for name, spec in OPERATIONS.items():
        schema = object_schema(spec.fields, settings)
        schema["properties"] = {"op": {"const": name}, **schema["properties"]}
        schema["required"] = ["op", *schema["required"]]
        schema["description"] = spec.doc
        variants.append(schema)
    return {"type": "array", "maxItems": settings.max_operations, "items": {"oneOf": variants}}


@dataclass(frozen=True)
class OperationSpec:
    """An op's fields, what it does, and how its fields make the op (with any rule that ties
    fields together)."""

    doc: str
    fields: tuple[Field[Any], ...]
    build: Callable[[FieldReader, Settings], Operation]


def _dimension(name: str, doc: str, limit: Callable[[Settings], int]) -> OptionalInteger:
    return OptionalInteger(name, doc, 1, limit)


RESIZE_WIDTH: Final = _dimension("width", "box width in px", lambda s: s.max_input_width)
RESIZE_HEIGHT: Final = _dimension("height", "box height in px", lambda s: s.max_input_height)
FIT: Final = Choice(
    "fit",
    "contain: fit inside, keeping aspect; cover: fill, centre-crop the overflow; fill: stretch; "
    "inside: contain, never enlarging",
    FITS,
    default="contain",
)


def _resize(f: FieldReader, s: Settings) -> Resize:
    op = Resize(RESIZE_WIDTH.read(f, s), RESIZE_HEIGHT.read(f, s), FIT.read(f, s))
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


CROP_X: Final = Integer("x", "left edge in px", 0, lambda s: s.max_input_width - 1)
CROP_Y: Final = Integer("y", "top edge in px", 0, lambda s: s.max_input_height - 1)
CROP_WIDTH: Final = Integer("width", "width in px", 1, lambda s: s.max_input_width)
CROP_HEIGHT: Final = Integer("height", "height in px", 1, lambda s: s.max_input_height)


def _crop(f: FieldReader, s: Settings) -> Crop:
    return Crop(CROP_X.read(f, s), CROP_Y.read(f, s), CROP_WIDTH.read(f, s), CROP_HEIGHT.read(f, s))


DEGREES: Final = Number("degrees", "clockwise; multiples of 90 are exact", -360, 360)
ROTATE_BACKGROUND: Final = Color(
    "background",
    "fills the grown canvas",
    allow_transparent=True,
    default=NAMED_COLORS["transparent"],
)


def _rotate(f: FieldReader, s: Settings) -> Rotate:
    return Rotate(DEGREES.read(f, s), ROTATE_BACKGROUND.read(f, s))


DIRECTION: Final = Choice("direction", "the mirror's axis", FLIP_DIRECTIONS)


def _flip(f: FieldReader, s: Settings) -> Flip:
    return Flip(DIRECTION.read(f, s))


def _grayscale(f: FieldReader, s: Settings) -> Grayscale:
    return Grayscale()


BLUR_RADIUS: Final = Number("radius", "standard deviation in px", 0.1, MAX_BLUR_RADIUS)
SHARPEN_RADIUS: Final = Number("radius", "standard deviation in px", 0.1, MAX_SHARPEN_RADIUS)


def _blur(f: FieldReader, s: Settings) -> Blur:
    return Blur(BLUR_RADIUS.read(f, s))


def _sharpen(f: FieldReader, s: Settings) -> Sharpen:
    return Sharpen(SHARPEN_RADIUS.read(f, s))


BRIGHTNESS: Final = Number("brightness", "added to every 0..1 value, in %", -100, 100, default=0.0)
CONTRAST: Final = Number("contrast", "slope around 0.5, in %", -100, 100, default=0.0)


def _adjust(f: FieldReader, s: Settings) -> Adjust:
    return Adjust(BRIGHTNESS.read(f, s), CONTRAST.read(f, s))


WATERMARK_TEXT: Final = Text(
    "text", "the watermark's text, one line", lambda s: s.max_watermark_length, multiline=False
)
WATERMARK_SIZE: Final = Integer(
    "size", "font size in px", lambda s: s.min_font_size, lambda s: s.max_font_size, default=24
)
WATERMARK_COLOR: Final = Color("color", "the text's color", default=(255, 255, 255, 160))
GRAVITY: Final = Choice("gravity", "the edge or corner it sits at", GRAVITIES, default="southeast")
MARGIN: Final = Integer("margin", "px from the edges", 0, 1000, default=10)


def _watermark(f: FieldReader, s: Settings) -> Watermark:
    return Watermark(
        text=WATERMARK_TEXT.read(f, s),
        font=FONT.read(f, s),
        size=WATERMARK_SIZE.read(f, s),
        color=WATERMARK_COLOR.read(f, s),
        gravity=GRAVITY.read(f, s),
        margin=MARGIN.read(f, s),
    )


OPERATIONS: Final[dict[str, OperationSpec]] = {
    "resize": OperationSpec(
        "scale to a box; contain and inside take either dimension alone",
        (RESIZE_WIDTH, RESIZE_HEIGHT, FIT),
        _resize,
    ),
    "crop": OperationSpec(
        "cut a box that lies inside the image", (CROP_X, CROP_Y, CROP_WIDTH, CROP_HEIGHT), _crop
    ),
    "rotate": OperationSpec("turn clockwise", (DEGREES, ROTATE_BACKGROUND), _rotate),
    "flip": OperationSpec("mirror", (DIRECTION,), _flip),
    "grayscale": OperationSpec("Rec. 601 luma; alpha kept", (), _grayscale),
    "blur": OperationSpec("Gaussian blur", (BLUR_RADIUS,), _blur),
    "sharpen": OperationSpec("unsharp mask at 150%, threshold 0", (SHARPEN_RADIUS,), _sharpen),
    "adjust": OperationSpec(
        "out = (in - 0.5) * (1 + contrast/100) + 0.5 + brightness/100 on 0..1 values",
        (BRIGHTNESS, CONTRAST),
        _adjust,
    ),
    "watermark": OperationSpec(
        "text drawn by the text renderer, placed by gravity",
        (WATERMARK_TEXT, FONT, WATERMARK_SIZE, WATERMARK_COLOR, GRAVITY, MARGIN),
        _watermark,
    ),
}

OPERATION_NAMES: Final = tuple(OPERATIONS)
