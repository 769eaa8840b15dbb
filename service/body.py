"""Reading request bodies within their size limit.

The body is read chunk by chunk and refused with 413 as soon as it passes the limit, so a
client cannot make the front buffer more than the limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request

from renderq.errors import ErrorCode, MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from renderq.validation import whole_number


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks; raises 413 as soon as more than `limit` bytes have come."""
    # A length too long or malformed to read is left to the count below.
    declared = whole_number(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise too_large(limit)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        yield chunk


async def read_limited_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in limited_stream(request, limit)])


async def read_json_body(request: Request, limit: int) -> Any:
    """The decoded JSON body of a request that says it is JSON."""
    if media_type(request) != "application/json":
        raise UnsupportedMediaType(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body (application/json), an image (image/* or "
            "application/octet-stream) or a multipart form; "
            f"got Content-Type {media_type(request) or 'none'!r}",
        )
    return parse_json(await read_limited_body(request, limit), "body")


def parse_json(data: bytes | str, what: str, field: str | None = None) -> Any:
    """Decode strict JSON: no NaN or Infinity, no number Python cannot hold exactly.

    Every way the decoder can fail, a 5,000-digit integer included (Python refuses to read
    more than 4,300 digits), is the client's: 400 `invalid_json`.
    """
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise MalformedRequest(
            ErrorCode.INVALID_JSON, f"{what} is nested too deeply", field
        ) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and digit limits too
        raise MalformedRequest(
            ErrorCode.INVALID_JSON, f"{what} is not valid JSON: {exc}", field
        ) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(ErrorCode.BODY_TOO_LARGE, f"request body is larger than {limit} bytes")
