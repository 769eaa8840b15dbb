"""Who may use the operators' routes (the dashboard's data and actions, `/metrics`): the
operators' tokens (`RENDERQ_ADMIN_TOKEN`, `RENDERQ_METRICS_TOKEN`) or, with
`RENDERQ_AUTH=required`, an API key created with `--admin`.

A token travels in `Authorization: Bearer <token>` only, never in a cookie, so a page of
another site cannot make a browser send it (no CSRF), and it is compared in constant time.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from renderq.errors import ErrorCode, Forbidden, Unauthorized
from service.tenancy import Tenants, bearer_token


async def require_operator(request: Request, token: str, setting: str) -> None:
    """Let the request through if it carries `token` (the value of the setting named
    `setting`, when set) or an admin API key; 401 (with WWW-Authenticate) without either,
    403 for a tenant's key that is not an admin's."""
    tenants: Tenants = request.app.state.front.tenants
    given = bearer_token(request.headers.get("authorization"))
    # As bytes: compare_digest refuses a str with characters beyond ASCII.
    if given is not None and token and hmac.compare_digest(given.encode(), token.encode()):
        return
    tenant = None
    if given is not None and tenants.required:
        tenant = await tenants.from_key(given)
    if tenant is not None and tenant.admin:
        return
    if tenant is not None:
        raise Forbidden(
            ErrorCode.FORBIDDEN, "this API key is not an admin's: create one with --admin"
        )
    wanted = f"the {setting}" if token else ""
    if tenants.required:
        wanted = f"{wanted} or an admin API key" if wanted else "an admin API key"
    raise Unauthorized(ErrorCode.UNAUTHORIZED, f"this needs Authorization: Bearer <{wanted}>")
