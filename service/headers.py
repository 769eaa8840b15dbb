"""Request headers the front reads, each with its rule in one place (for `/openapi.json` too)."""

from __future__ import annotations

import re
from typing import Final

from starlette.requests import Request

from renderq.errors import ErrorCode, MalformedRequest
from renderq.validation import whole_number

IDEMPOTENCY_KEY_MAX: Final = 255
# 1 to 255 printable ASCII characters: what a header can carry unchanged through proxies.
IDEMPOTENCY_KEY_PATTERN: Final = f"^[\\x20-\\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
_IDEMPOTENCY_KEY: Final = re.compile(IDEMPOTENCY_KEY_PATTERN)


def idempotency_key(request: Request) -> str | None:
    """The client's Idempotency-Key, None without one; 400 `invalid_header` if malformed."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise MalformedRequest(
            ErrorCode.INVALID_HEADER,
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            "Idempotency-Key",
        )
    return key


def preferred_wait(request: Request, max_wait: int) -> int | None:
    """The seconds of RFC 7240's `Prefer: wait=N`, capped at `max_wait`; None when the client
    did not ask. A preference is a hint: one the front cannot read is ignored, as the RFC
    says, never refused."""
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            name, _, value = preference.split(";")[0].partition("=")
            if name.strip().lower() == "wait":
                seconds = whole_number(value.strip().strip('"'))
                return None if seconds is None else min(seconds, max_wait)
    return None


def matches_etag(request: Request, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (or is `*`): the client's copy is current. The
    comparison is the weak one RFC 9110 prescribes for this header."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags
