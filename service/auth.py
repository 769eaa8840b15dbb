"""Bearer tokens for the operators' routes (the dashboard's actions; `/metrics` may use one).

A token travels in `Authorization: Bearer <token>` only, never in a cookie, so a page of
another site cannot make a browser send it (no CSRF), and it is compared in constant time.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from renderq.errors import ErrorCode, Unauthorized


def require_bearer(request: Request, token: str, setting: str) -> None:
    """Raise `Unauthorized` (401, with WWW-Authenticate) unless the request carries `token`,
    the value of the setting named `setting`."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # As bytes: compare_digest refuses a str with characters beyond ASCII.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized(
            ErrorCode.UNAUTHORIZED, f"this needs Authorization: Bearer <the {setting}>"
        )
