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


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks; raises 413 as soon as more than `limit` bytes have come."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
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
    body = await read_limited_body(request, limit)
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise MalformedRequest(ErrorCode.INVALID_JSON, "body is nested too deeply") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from exc


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(ErrorCode.BODY_TOO_LARGE, f"request body is larger than {limit} bytes")
