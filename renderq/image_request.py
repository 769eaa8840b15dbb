"""The image job: an uploaded image and the operations to apply to it, with their rules.

The front parses a request with `parse_image_request` after probing the upload's header; the
worker probes the stored bytes and parses the stored request again before rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from renderq.engine_formats import can_write, check_readable, check_writable
from renderq.errors import ErrorCode, InvalidRequest
from renderq.fields import Field, FieldReader, Flag, Integer, OptionalChoice, field_names
from renderq.geometry import Size, plan_sizes
from renderq.image_header import ImageHeader
from renderq.operations import (
    Operation,
    operation_to_json,
    operations_schema,
    parse_operations,
)
from renderq.settings import Settings
from renderq.text_request import ENGINE
from renderq.vocabulary import DEFAULT_ENGINE, FALLBACK_IMAGE_FORMAT, OUTPUT_FORMATS


@dataclass(frozen=True)
class Operations(Field[tuple[Operation, ...]]):
    """The `ops` array: each op read by its own declared fields (`renderq.operations`)."""

    default: Any = field(default=(), kw_only=True)

    def check(self, value: Any, name: str, settings: Settings) -> tuple[Operation, ...]:
        return parse_operations(value, settings)

    def schema(self, settings: Settings) -> dict[str, Any]:
        return {**super().schema(settings), **operations_schema(settings)}

    def shown(self, value: Any) -> Any:
        return list(value)


OPS: Final = Operations("ops", "the operations, applied in order")
FORMAT: Final = OptionalChoice(
    "format",
    f"the image format (default: the input's, or {FALLBACK_IMAGE_FORMAT} for BMP and TIFF, "
    "and for AVIF on imagemagick, which cannot write it)",
    OUTPUT_FORMATS,
    ErrorCode.UNKNOWN_FORMAT,
)
QUALITY: Final = Integer(
    "quality",
    "for jpeg, webp and avif (ignored by the others)",
    1,
    100,
    default=lambda s: s.default_quality,
)
KEEP_METADATA: Final = Flag(
    "keep_metadata", "keep the EXIF block (orientation reset to 1); all else is stripped"
)
IMAGE_FIELDS: Final = (OPS, FORMAT, QUALITY, ENGINE, KEEP_METADATA)


@dataclass(frozen=True)
class ImageRequest:
    ops: tuple[Operation, ...]
    format: str
    quality: int
    engine: str = DEFAULT_ENGINE
    keep_metadata: bool = False
    input_format: str = FALLBACK_IMAGE_FORMAT
    orientation: int = 1  # EXIF orientation to apply before the ops (JPEG only)
    input_size: Size = (0, 0)  # the upright size the header declares: the decoder must agree
    sizes: tuple[Size, ...] = ()  # the size after each op, from `plan_sizes`

    def size_before(self, index: int) -> Size:
        """The planned size of the image op `index` receives."""
        return self.sizes[index - 1] if index else self.input_size

    def to_json(self) -> dict[str, Any]:
        """The canonical form stored in Redis; the input's own facts are probed again."""
        return {
            "ops": [operation_to_json(op) for op in self.ops],
            "format": self.format,
            "quality": self.quality,
            "engine": self.engine,
            "keep_metadata": self.keep_metadata,
        }


def parse_image_request(data: object, header: ImageHeader, settings: Settings) -> ImageRequest:
    """Validate the request against the probed upload, or raise a `RenderqError`."""
    check_input_limits(header, settings)
    fields = FieldReader(data, field_names(IMAGE_FIELDS))
    ops = OPS.read(fields, settings)
    engine = ENGINE.read(fields, settings)
    check_readable(engine, header.format, header.alpha_plane)
    output = FORMAT.read(fields, settings) or default_format(header.format, engine)
    check_writable(engine, output)
    return ImageRequest(
        ops=ops,
        format=output,
        quality=QUALITY.read(fields, settings),
        engine=engine,
        keep_metadata=KEEP_METADATA.read(fields, settings),
        input_format=header.format,
        orientation=header.orientation,
        input_size=header.upright_size,
        sizes=tuple(plan_sizes(header.upright_size, ops, settings)),
    )


def default_format(input_format: str, engine: str) -> str:
    """The input's format when renderq writes it and the engine can, else the fallback."""
    if input_format in OUTPUT_FORMATS and can_write(engine, input_format):
        return input_format
    return FALLBACK_IMAGE_FORMAT


def check_input_limits(header: ImageHeader, settings: Settings) -> None:
    """Refuse from the header alone an image too large to decode, or an animated one."""
    if header.width > settings.max_input_width or header.height > settings.max_input_height:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the image is {header.width}x{header.height}; the limit is "
            f"{settings.max_input_width}x{settings.max_input_height}",
            "file",
        )
    if header.width * header.height > settings.max_input_pixels:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the image has {header.width * header.height} pixels; the limit is "
            f"{settings.max_input_pixels}",
            "file",
        )
    if header.animated:
        raise InvalidRequest(
            ErrorCode.ANIMATED_IMAGE,
            "animated and multi-page images are not accepted; send a single frame",
            "file",
        )
