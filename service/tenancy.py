"""Who is asking: every request but a few open ones belongs to a tenant, found by its API key.

`TenantGate`, a middleware, decides before any route runs, so a route added later is closed
unless listed as open here. With `RENDERQ_AUTH=off` every request is the one implicit tenant
(`renderq.tenants.DEFAULT_TENANT`) and Redis is not asked. With `required`, the key in
`Authorization: Bearer <key>` is checked against its salted hash in Redis; what Redis holds
is remembered for at most `KEY_CACHE_SECONDS`, so a revoked key stops working on every front
within that, while a busy tenant costs Redis one read a second per front, not one a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from renderq.api_keys import ApiKey, KeyLimits, parse_key
from renderq.errors import ErrorCode, RenderqError, Unauthorized
from renderq.keys import Keys
from renderq.logs import log_event
from renderq.settings import Settings
from renderq.tenants import DEFAULT_TENANT
from service.queue import JobStore

logger = logging.getLogger("renderq.service")

KEY_CACHE_SECONDS: Final = 1.0
# Names remembered at most; past it the memory starts again (a flood of made-up names).
_CACHE_MAX: Final = 10_000
# Open without a key: health checks, the API's description, the dashboard's static page
# (its data is not), signed result links (their signature is the credential), and the
# operators' routes, which take an admin key or the operators' tokens themselves
# (`service.auth.require_operator`).
# Each named exactly: a prefix as wide as "/dashboard/" would open any route added under it.
OPEN_PATHS: Final = frozenset(
    {
        "/healthz",
        "/openapi.json",
        "/dashboard",
        "/dashboard/dashboard.js",
        "/dashboard/state",
        "/metrics",
    }
)
OPEN_PREFIXES: Final = ("/results/", "/dashboard/dead-letters/")
_SCOPE_KEY: Final = "renderq.tenant"


@dataclass(frozen=True)
class Tenant:
    """The tenant a request acts for, with its key's limits."""

    name: str
    limits: KeyLimits

    @property
    def admin(self) -> bool:
        return self.limits.admin


IMPLICIT_TENANT: Final = Tenant(DEFAULT_TENANT, KeyLimits())


class Tenants:
    """The front's view of the API keys: what Redis holds, remembered for a second."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.required = settings.auth_required
        self._store = store
        self._keys = store.keys
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def from_header(self, authorization: str | None) -> Tenant:
        """The tenant whose key `authorization` carries; `Unauthorized` for anything else."""
        if not self.required:
            return IMPLICIT_TENANT
        given = bearer_token(authorization)
        tenant = None if given is None else await self.from_key(given)
        if tenant is None:
            raise _needs_key()
        return tenant

    async def from_key(self, text: str) -> Tenant | None:
        """The tenant whose key `text` is, or None for no such key (or a revoked one)."""
        parsed = parse_key(text)
        if parsed is None:
            return None
        name, secret = parsed
        stored = await self._stored(name)
        if stored is None or not stored.matches(secret):
            return None
        return Tenant(name, stored.limits)

    async def count(self) -> int:
        """How many keys exist (what the start-up log reports)."""
        return int(await self._store.guarded(_count_keys, self._store.redis, self._keys))

    async def _stored(self, name: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        stored = await self._store.guarded(_read_key, self._store.redis, self._keys, name)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[name] = (now, stored)
        return stored


async def _read_key(redis: Redis, keys: Keys, name: str) -> ApiKey | None:
    text: Any = await redis.hget(keys.api_keys, name)
    return None if text is None else ApiKey.from_json(name, text)


async def _count_keys(redis: Redis, keys: Keys) -> int:
    return int(await redis.hlen(keys.api_keys))


def bearer_token(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None for any other header (none, an
    other scheme, an empty token)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def tenant_of(request: Request) -> Tenant:
    """The tenant `TenantGate` found for this request."""
    tenant = request.scope.get(_SCOPE_KEY)
    if not isinstance(tenant, Tenant):  # an open route asked: it has no tenant
        raise _needs_key()
    return tenant


def _needs_key() -> Unauthorized:
    return Unauthorized(ErrorCode.UNAUTHORIZED, "this needs Authorization: Bearer <an API key>")


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class TenantGate:
    """ASGI middleware: finds each request's tenant, or answers 401 itself (as the app's
    handler for `RenderqError`, `on_error`, would)."""

    def __init__(
        self,
        app: ASGIApp,
        on_error: Callable[[Request, Exception], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        tenants: Tenants = request.app.state.front.tenants
        try:
            scope[_SCOPE_KEY] = await tenants.from_header(request.headers.get("authorization"))
        except RenderqError as exc:
            response = await self.on_error(request, exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def log_auth_mode(tenants: Tenants) -> None:
    """Say at start whether keys are needed, and how to make the first one when none exists."""
    if not tenants.required:
        log_event(logger, "auth_off", tenant=DEFAULT_TENANT, how="RENDERQ_AUTH=required for keys")
        return
    count = await tenants.count()
    if count:
        log_event(logger, "auth_required", keys=count)
        return
    log_event(
        logger,
        "auth_required_no_keys",
        logging.WARNING,
        keys=0,
        how="every request gets 401 until a key exists: python -m service.keys create NAME",
    )
