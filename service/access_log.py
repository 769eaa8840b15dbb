"""One structured log line per HTTP request: method, path, status and duration; the same
request is counted for `/metrics` (see `service.metrics.FrontCounts`).

Refused requests (4xx) are as visible in the logs as accepted ones, which is what an operator
debugging a client needs. A job id in the path is logged as its tag (`renderq.job_tags`).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from renderq.jobs import is_job_id
from renderq.logs import log_event

logger = logging.getLogger("renderq.service.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            seconds = time.perf_counter() - started
            state = getattr(scope["app"].state, "front", None)
            if state is not None:
                state.counts.record_request(scope, status, seconds)
            log_event(
                logger,
                "request",
                method=scope["method"],
                path=loggable_path(scope),
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )


def loggable_path(scope: Scope) -> str:
    """The path with a job id replaced by its tag: a log line must not grant a result."""
    path: str = scope["path"]
    parts = path.split("/")
    # `/results/<id>` too: with auth off the id alone grants the job's result.
    if len(parts) < 3 or parts[1] not in ("jobs", "results") or not is_job_id(parts[2]):
        return path
    state = getattr(scope["app"].state, "front", None)
    parts[2] = "job:" + (state.tags.tag(parts[2]) if state is not None else "-")
    return "/".join(parts)
