"""The Starlette application: `create_app(settings)`; the lifespan owns the Redis pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisFull
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from renderq.errors import ErrorCode, QueueUnavailable, RenderqError
from renderq.job_tags import JobTags
from renderq.logs import log_event
from renderq.redis_connection import open_async_redis
from renderq.settings import Settings
from service.access_log import AccessLog, loggable_path
from service.breaker import RedisUnavailable
from service.dashboard import DASHBOARD_ROUTES
from service.events import JobEvents
from service.metrics import FrontCounts
from service.queue import JobStore
from service.result_links import LinkSigner
from service.routes import ROUTES, FrontState, error_response
from service.tenancy import TenantGate, Tenants, log_auth_mode

logger = logging.getLogger("renderq.service")

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


def create_app(settings: Settings) -> Starlette:
    links = LinkSigner.of(settings)  # a signing key file that cannot be read stops the start

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = open_async_redis(settings)
        store = JobStore(redis, settings)
        await store.learn_replicas()
        events = JobEvents(redis, store.keys.finished_channel)
        counts = FrontCounts(redis, store.keys, settings.rate_window)
        tenants = Tenants(settings, store)
        app.state.front = state = FrontState(
            settings, store, events, JobTags(), counts, tenants, links
        )
        with contextlib.suppress(RedisUnavailable):
            # The tag key exists before the first job is queued: its events name it by tag.
            await state.tag("")
            await log_auth_mode(tenants)
        if not links.enabled:
            log_event(logger, "result_links_off", how="set RENDERQ_SIGNING_KEY(_FILE)")
        tasks = [asyncio.create_task(events.listen()), asyncio.create_task(counts.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a task that swallowed its cancel must not hold the shutdown forever.
            await asyncio.wait(tasks, timeout=2)
            await store.close()
            await redis.aclose()

    return Starlette(
        routes=[*ROUTES, *DASHBOARD_ROUTES],
        lifespan=lifespan,
        middleware=[Middleware(AccessLog), Middleware(TenantGate, on_error=renderq_error)],
        exception_handlers={
            RenderqError: renderq_error,
            HTTPException: http_error,
            RedisConnectionError: redis_unavailable,
            RedisTimeoutError: redis_unavailable,
            RedisFull: redis_full,
            Exception: internal_error,
        },
    )


async def renderq_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RenderqError)
    if exc.status in (429, 503):  # a full queue: tell the client when to come back
        settings: Settings = request.app.state.front.settings
        return error_response(exc, {"Retry-After": str(settings.retry_after)})
    return error_response(exc, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_PARAMETER)
    error = RenderqError(code, str(exc.detail))
    error.status = exc.status_code
    return error_response(error, exc.headers)


async def redis_unavailable(request: Request, exc: Exception) -> Response:
    log_event(
        logger,
        "redis_unavailable",
        logging.WARNING,
        error=str(exc),
        path=loggable_path(request.scope),
    )
    settings: Settings = request.app.state.front.settings
    error = RedisUnavailable(type(exc).__name__)
    return error_response(error, {"Retry-After": str(settings.retry_after)})


async def redis_full(request: Request, exc: Exception) -> Response:
    """Redis reached its maxmemory (noeviction refuses writes, nothing is lost): 503."""
    log_event(logger, "redis_full", logging.WARNING, path=loggable_path(request.scope))
    settings: Settings = request.app.state.front.settings
    error = QueueUnavailable(ErrorCode.QUEUE_FULL, "the job store is full; try again shortly")
    return error_response(error, {"Retry-After": str(settings.retry_after)})


async def internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("internal_error", extra={"fields": {"path": loggable_path(request.scope)}})
    return error_response(
        RenderqError(ErrorCode.INTERNAL_ERROR, "renderq failed to handle this request")
    )
