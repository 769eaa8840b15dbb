"""Request headers the front reads, each with its rule in one place (for `/openapi.json` too)."""

from __future__ import annotations

import re
from typing import Final

from starlette.requests import Request

from renderq.errors import ErrorCode, MalformedRequest

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
