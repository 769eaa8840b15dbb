"""Reading an image job from a request: multipart form or raw image body, within limits.

Both kinds come out the same: the image bytes and the request fields as JSON values, ready
for `parse_image_request`. The upload limit is enforced while the body streams in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from renderq.errors import ErrorCode, MalformedRequest
from renderq.image_request import IMAGE_FIELDS
from renderq.settings import Settings
from renderq.validation import whole_number
from service.body import limited_stream, media_type, parse_json, read_limited_body, too_large

_BOOLEANS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def is_image_upload(request: Request) -> bool:
    kind = media_type(request)
    return (
        kind == "multipart/form-data"
        or kind.startswith("image/")
        or (kind == "application/octet-stream")
    )


async def read_image_upload(request: Request, settings: Settings) -> tuple[bytes, dict[str, Any]]:
    """(image bytes, request fields) from a multipart form or a raw body with query parameters."""
    if media_type(request) == "multipart/form-data":
        return await _read_multipart(request, settings)
    data = await read_limited_body(request, settings.max_upload_bytes)
    return data, form_values_to_json(request.query_params)


def form_values_to_json(values: Mapping[str, str]) -> dict[str, Any]:
    """Turn text form or query values into the JSON types the request schema expects.

    Values that do not convert are passed on as text, for the schema to refuse by field.
    """
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if key == "ops":
            fields[key] = parse_json(value, "'ops'", "ops")
        elif key == "quality" and whole_number(value) is not None:
            fields[key] = whole_number(value)
        elif key == "keep_metadata":
            fields[key] = _BOOLEANS.get(value.lower(), value)
        else:
            fields[key] = value
    return fields


async def _read_multipart(request: Request, settings: Settings) -> tuple[bytes, dict[str, Any]]:
    # The form fields are small; the whole body may exceed the file limit by their size only.
    limit = settings.max_upload_bytes + settings.max_body_bytes
    parser = MultiPartParser(
        request.headers,
        limited_stream(request, limit),
        max_files=1,
        max_fields=len(IMAGE_FIELDS),
        max_part_size=settings.max_body_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise MalformedRequest(ErrorCode.INVALID_FORM, f"malformed multipart form: {exc}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise MalformedRequest(
                ErrorCode.INVALID_FORM, "the form needs the image in a 'file' field", "file"
            )
        data = await upload.read()
        if len(data) > settings.max_upload_bytes:
            raise too_large(settings.max_upload_bytes)
        values = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
        return data, form_values_to_json(values)
    finally:
        await form.close()
