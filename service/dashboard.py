"""The live dashboard: `GET /dashboard` serves one page (`dashboard.html`, `dashboard.js`:
no build step) that polls `GET /dashboard/state` every two seconds.

The page is read-only unless `RENDERQ_ADMIN_TOKEN` is set or API keys are required;
requeueing a dead letter then needs that token or an admin key as a bearer token (with keys
required, so does the page's data). Job ids, which grant access to results, never reach the
page: jobs are named by their tags, and a dead letter by its entry id.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from renderq.errors import ErrorCode, Forbidden, NotFound
from renderq.logs import log_event
from renderq.queue_protocol import requeue_call
from service import dashboard_state as view
from service.auth import require_operator
from service.queue import JobStore, run_script
from service.routes import FrontState, front
from service.workers import isolation

logger = logging.getLogger("renderq.service")

_HERE = Path(__file__).parent
# Read once: the page never changes while the front runs.
PAGE: Final = (_HERE / "dashboard.html").read_bytes()
SCRIPT: Final = (_HERE / "dashboard.js").read_bytes()

# The page runs only its own script and talks only to this front; no other site may frame
# it (the requeue button) or learn its address.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ENTRY_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


async def dashboard_page(request: Request) -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def dashboard_script(request: Request) -> Response:
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)


async def dashboard_state(request: Request) -> Response:
    """Everything the page shows, as of now."""
    state = front(request)
    if state.settings.auth_required:  # the deployment's state is no tenant's business
        await require_operator(request, state.settings.admin_token, "RENDERQ_ADMIN_TOKEN")
    store = state.store
    now = time.time()
    reading = await store.guarded(view.read_queue, store.redis, store.keys, now)
    reports = await store.worker_reports()
    sandbox = isolation(reports)
    document = {
        "now": now,
        "read_only": not (state.settings.admin_token or state.settings.auth_required),
        "sandbox": {"status": sandbox.status, "weakened": sandbox.weakened},
        "queue": view.queue_summary(reading),
        # The rate the time left of queued jobs is computed from (see `renderq.time_left`).
        "rate": {
            "per_second": state.counts.jobs_per_second,
            "window_seconds": state.settings.rate_window,
        },
        "series": view.series(reading),
        "render_times": view.render_times(reading.events),
        "workers": view.workers(reports, reading.consumers, now),
        "failures": view.failures(reading.events),
        "dead_letters": [await _dead_letter_row(state, dead) for dead in reading.dead_letters],
    }
    return JSONResponse(document, headers={"Cache-Control": "no-store"})


async def _dead_letter_row(state: FrontState, dead: view.DeadLetter) -> dict[str, Any]:
    job = dead.job
    row: dict[str, Any] = {"entry": dead.entry_id, "job": await state.tag(dead.job_id)}
    if job is None:
        return {**row, "status": "expired"}
    return {
        **row,
        "status": str(job.status),
        "kind": str(job.kind),
        "engine": job.engine,
        "attempts": job.attempts,
        "code": job.error_code,
        "failed_at": job.finished_at,
    }


async def requeue_dead_letter(request: Request) -> Response:
    """Put a dead letter's job back on the queue, as `python -m worker.dead_letters requeue`
    does; needs the admin token or an admin key."""
    state = front(request)
    token = state.settings.admin_token
    if not token and not state.settings.auth_required:
        raise Forbidden(
            ErrorCode.FORBIDDEN, "the dashboard is read-only: set RENDERQ_ADMIN_TOKEN to requeue"
        )
    await require_operator(request, token, "RENDERQ_ADMIN_TOKEN")
    entry_id = request.path_params["entry_id"]
    store = state.store
    found = None
    if _ENTRY_ID.fullmatch(entry_id):
        found = await store.guarded(_requeue, store, entry_id, time.time())
    if found is None:
        raise NotFound(ErrorCode.DEAD_LETTER_NOT_FOUND, "no such dead letter: already requeued?")
    job_id, requeued = found
    if not requeued:
        raise NotFound(
            ErrorCode.JOB_NOT_FOUND, "the dead letter's job has expired: its entry is removed"
        )
    tag = await state.tag(job_id)
    log_event(logger, "dead_letter_requeued", job=tag, entry=entry_id)
    return JSONResponse({"requeued": True, "job": tag})


async def _requeue(store: JobStore, entry_id: str, now: float) -> tuple[str, bool] | None:
    """The entry's job id and whether it went back on the queue; None for no such entry.
    The script drops the entry either way, and requeues only a job still dead-lettered, so
    two operators clicking at once requeue it once."""
    entries: Any = await store.redis.xrange(store.keys.dead_letters, entry_id, entry_id)
    if not entries:
        return None
    job_id = entries[0][1][b"id"].decode()
    call = requeue_call(store.keys, entry_id, job_id, store.limits, now)
    return job_id, bool(await run_script(store.redis, call, store.acks))


DASHBOARD_ROUTES = [
    Route("/dashboard", dashboard_page, methods=["GET"]),
    Route("/dashboard/dashboard.js", dashboard_script, methods=["GET"]),
    Route("/dashboard/state", dashboard_state, methods=["GET"]),
    Route("/dashboard/dead-letters/{entry_id}/requeue", requeue_dead_letter, methods=["POST"]),
]
