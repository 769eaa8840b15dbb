"""The contract's field rules, applied before anything is sent.

The rules are the server's own declarations (`renderq.text_request.TEXT_FIELDS`,
`renderq.image_request.IMAGE_FIELDS` and the ops of `renderq.operations`), so the client
cannot drift from the API: a new field or rule reaches it with the contract. The limits an
operator sets (`RENDERQ_MAX_*`, `RENDERQ_MIN_*`) are the server's to apply: the client checks
against limits wide open, so it never refuses what a server configured wider would take, and
the server answers 422 for what its own limits refuse.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypedDict

from renderq.client.errors import RefusedBeforeSending, refusal
from renderq.colors import RGBA, parse_color
from renderq.errors import ErrorCode
from renderq.errors import RenderqError as ContractError
from renderq.fields import Field, FieldReader, field_names
from renderq.image_request import IMAGE_FIELDS
from renderq.operations import Operation, operation_to_json
from renderq.settings import Settings
from renderq.text_request import TEXT_FIELDS

_WIDE_OPEN: Final[dict[str, Any]] = {
    f.name: 0 if f.name.startswith("min_") else 2**31 - 1
    for f in dataclasses.fields(Settings)
    if f.name.startswith(("max_", "min_"))
}
_OPEN_LIMITS: Final = dataclasses.replace(Settings(), **_WIDE_OPEN)

# An op as a builder (`Resize(256, 256)`) or as the API's JSON object.
OperationLike = Operation | Mapping[str, Any]


class TextFields(TypedDict, total=False):
    """A text job's fields besides `text` (README, "queue a text job"); left out, the
    server's default applies."""

    engine: str
    font: str
    size: int
    color: str
    background: str
    width: int
    height: int
    format: str
    on_missing_glyph: str


class ImageFields(TypedDict, total=False):
    """An image job's fields besides the image and its `ops`."""

    format: str
    quality: int
    engine: str
    keep_metadata: bool


def text_body(text: str, fields: TextFields) -> dict[str, Any]:
    """The JSON body of a text job, checked."""
    body: dict[str, Any] = {"text": text, **fields}
    _check(body, TEXT_FIELDS)
    return body


def image_form(ops: Sequence[OperationLike], fields: ImageFields) -> dict[str, str]:
    """The form fields of an image job (`ops` as a JSON string), checked."""
    data: dict[str, Any] = {"ops": [_op_json(op) for op in ops], **fields}
    _check(data, IMAGE_FIELDS)
    return {name: _form_value(value) for name, value in data.items()}


def rgba(color: str) -> RGBA:
    """A color in the API's grammar (`#rgb`, `#rrggbb`, `#rrggbbaa` or a name) as the RGBA
    tuple the op builders take: `Rotate(30, background=rgba("white"))`."""
    value = parse_color(color)
    if value is None:
        raise RefusedBeforeSending(
            str(ErrorCode.INVALID_COLOR),
            f"{color!r} is not #rgb, #rrggbb, #rrggbbaa or a color name",
            status=422,
        )
    return value


def _op_json(op: OperationLike) -> dict[str, Any]:
    return dict(op) if isinstance(op, Mapping) else operation_to_json(op)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _check(data: Mapping[str, Any], fields: tuple[Field[Any], ...]) -> None:
    try:
        reader = FieldReader(data, field_names(fields))
        for field in fields:
            field.read(reader, _OPEN_LIMITS)
    except ContractError as exc:
        raise refusal(exc) from exc
