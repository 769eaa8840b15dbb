"""The HTTP routes: submit a job, poll it, read its status, list fonts, health, OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from renderq.errors import (
    Conflict,
    ErrorCode,
    Gone,
    InvalidRequest,
    NotFound,
    QueueUnavailable,
    RenderqError,
    job_error,
)
from renderq.fonts import DEFAULT_FONT, FONT_FILES
from renderq.image_header import probe_image
from renderq.image_request import parse_image_request
from renderq.job_tags import JobTags
from renderq.jobs import Job, is_job_id, new_job_id
from renderq.logs import log_event
from renderq.queue_protocol import Idempotency
from renderq.settings import Settings
from renderq.text_request import parse_text_request
from renderq.time_left import TimeLeft
from renderq.validation import whole_number
from renderq.vocabulary import OUTPUT_MEDIA_TYPES, JobKind, JobStatus
from service.body import read_json_body
from service.events import JobEvents
from service.headers import idempotency_key, matches_etag, preferred_wait
from service.metrics import FrontCounts, metrics_route
from service.openapi import openapi_document
from service.queue import JobStore, JobView
from service.uploads import is_image_upload, read_image_upload
from service.workers import isolation

logger = logging.getLogger("renderq.service")


@dataclass(frozen=True)
class FrontState:
    """What every route needs; built by the lifespan and kept on `app.state.front`."""

    settings: Settings
    store: JobStore
    events: JobEvents
    tags: JobTags
    counts: FrontCounts

    async def tag(self, job_id: str) -> str:
        """The job's tag for the logs, loading the deployment's key on first use."""
        if not self.tags.ready:
            self.tags.load(await self.store.job_tag_key())
        return self.tags.tag(job_id)

    def time_left(self, view: JobView) -> TimeLeft | None:
        """Where a queued job stands (see `renderq.time_left`); None for any other."""
        job = view.job
        if job is None or job.status is not JobStatus.QUEUED or job.seq is None:
            return None
        return TimeLeft.of(job.seq, view.started_seq, self.counts.jobs_per_second)

    def not_ready(self, view: JobView, headers: dict[str, str]) -> Response:
        """The 202 of a job not ended yet: its status, and a Retry-After that follows its
        time left, so clients polling a long queue back off by themselves."""
        assert view.job is not None
        time_left = self.time_left(view)
        settings = self.settings
        retry = settings.retry_after
        if time_left is not None:
            retry = time_left.retry_after(settings.retry_after, settings.max_retry_after)
        headers["Retry-After"] = str(retry)
        return JSONResponse(view.job.status_document(time_left), status_code=202, headers=headers)


def front(request: Request) -> FrontState:
    state: FrontState = request.app.state.front
    return state


def error_response(exc: RenderqError, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


async def create_job(request: Request) -> Response:
    """A JSON body is a text job; a multipart form or an image body is an image job."""
    state = front(request)
    wait = preferred_wait(request, state.settings.max_wait)
    if wait is None:
        return _accepted(state, await _queue_job(request, state, new_job_id()))
    return await _queue_and_wait(request, state, wait)


def _accepted(state: FrontState, view: JobView) -> Response:
    assert view.job is not None
    return state.not_ready(view, {"Location": f"/jobs/{view.job.id}"})


async def _queue_and_wait(request: Request, state: FrontState, wait: int) -> Response:
    """Prefer: wait (RFC 7240): the job is queued and rendered as any other; only the waiting
    moves into this request, saving the client its first poll.

    The waiting starts before the job is queued, so a job that ends at once is not missed and
    nothing needs reading back first. The job is queued whatever happens while waiting, so a
    Redis that fails then gets the plain 202, not an error that would make the client queue
    it again.
    """
    job_id = new_job_id()
    with state.events.waiter(job_id) as finished:
        queued = await _queue_job(request, state, job_id)
        job = queued.job
        assert job is not None
        try:
            if job.id != job_id:  # an Idempotency-Key named an earlier job
                view = await _wait_for_job(state, job.id, wait)
            elif await _ends_within(finished, wait):
                view = await state.store.job_view(job_id)
            else:
                view = queued
        except (QueueUnavailable, NotFound):
            return _accepted(state, queued)
    if view.job is None:  # expired as soon as it ended: the 202 names where it was
        return _accepted(state, queued)
    headers = {"Content-Location": f"/jobs/{job.id}", "Preference-Applied": f"wait={wait}"}
    if not view.job.is_final:
        headers["Location"] = headers["Content-Location"]
    return _job_answer(state, view, headers)


async def _queue_job(request: Request, state: FrontState, job_id: str) -> JobView:
    """Validate and queue the request's job as `job_id` (or find the one its Idempotency-Key
    names), and say where it stands. The upload is dropped on return, before any waiting."""
    upload = None
    if is_image_upload(request):
        upload, fields = await read_image_upload(request, state.settings)
        image_request = parse_image_request(fields, probe_image(upload), state.settings)
        job = _new_job(
            job_id,
            JobKind.IMAGE,
            image_request.engine,
            image_request.format,
            image_request.to_json(),
        )
    else:
        _refuse_query(request)
        data = await read_json_body(request, state.settings.max_body_bytes)
        text_request = parse_text_request(data, state.settings)
        job = _new_job(
            job_id, JobKind.TEXT, text_request.engine, text_request.format, text_request.to_json()
        )
    key = idempotency_key(request)
    idempotency = Idempotency.of(key, job.request, upload) if key else None
    queued = await state.store.enqueue(job, upload, idempotency)
    if queued.job_id != job.id:  # the same request again under its Idempotency-Key
        existing = await state.store.job_view(queued.job_id, with_result=False)
        if existing.job is None:
            raise _job_not_found()
        return existing
    if logger.isEnabledFor(logging.INFO):  # a job's tag costs an HMAC: only when logged
        log_event(
            logger,
            "job_queued",
            job=await state.tag(job.id),
            kind=job.kind,
            engine=job.engine,
            upload_bytes=len(upload or b""),
        )
    return JobView(dataclasses.replace(job, seq=queued.seq), None, queued.started_seq)


def _new_job(job_id: str, kind: JobKind, engine: str, fmt: str, request: dict[str, Any]) -> Job:
    return Job(
        id=job_id,
        kind=kind,
        engine=engine,
        format=fmt,
        request=request,
        queued_at=time.time(),
    )


def _refuse_query(request: Request) -> None:
    """Query parameters are an image body's fields; a text job has all its fields in JSON."""
    if not request.scope["query_string"]:  # the usual case, without parsing an empty query
        return
    for name in request.query_params:
        raise InvalidRequest(
            ErrorCode.UNKNOWN_FIELD,
            f"a text job takes no query parameter; got {name!r} (put it in the JSON body)",
            name,
        )


async def job_route(request: Request) -> Response:
    """`/jobs/<id>`: GET polls the job, DELETE cancels it."""
    if request.method == "DELETE":
        return await cancel_job_route(request)
    return await get_job(request)


async def cancel_job_route(request: Request) -> Response:
    """Cancel a queued job: no worker will render it. A running or ended job is left alone."""
    state = front(request)
    job_id = _job_id(request)
    before = await state.store.cancel(job_id)
    if before is None:
        raise _job_not_found()
    if before != JobStatus.QUEUED:
        raise Conflict(
            ErrorCode.JOB_NOT_CANCELLABLE,
            f"the job is {before}: only a queued job can be cancelled"
            + ("; it will finish and its result stays available" if before == "running" else ""),
        )
    job = await state.store.job(job_id)
    if job is None:
        raise _job_not_found()
    log_event(logger, "job_cancelled", job=await state.tag(job_id))
    return JSONResponse(job.status_document())


async def get_job(request: Request) -> Response:
    """The image when done; 202 while not ready; the job's error when it failed."""
    state = front(request)
    view = await _wait_for_job(state, _job_id(request), _wait_seconds(request, state.settings))
    return _job_answer(state, view, {}, request)


def _job_answer(
    state: FrontState, view: JobView, headers: dict[str, str], conditional: Request | None = None
) -> Response:
    """The job as `GET /jobs/<id>` answers it: the image when done (304 when `conditional`
    names it in If-None-Match), its error when it failed, 202 while not ready."""
    job = view.job
    if job is None:
        raise _job_not_found()
    if job.status is JobStatus.FAILED:
        return error_response(job_error(job.error_code, job.error_message), headers)
    if job.status is JobStatus.CANCELLED:
        return _cancelled(job, headers)
    if job.status is JobStatus.DONE:
        result = view.result
        if result is None:  # expired between the two reads of one pipeline: gone all the same
            raise _job_not_found()
        # A job renders once and its result never changes: the id is a strong validator.
        headers["ETag"] = f'"{job.id}"'
        headers["Cache-Control"] = f"private, max-age={result.expires_in}, immutable"
        if conditional is not None and matches_etag(conditional, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return Response(result.image, media_type=OUTPUT_MEDIA_TYPES[job.format], headers=headers)
    return state.not_ready(view, headers)


async def get_job_status(request: Request) -> Response:
    state = front(request)
    view = await state.store.job_view(_job_id(request), with_result=False)
    job = view.job
    if job is None:
        raise _job_not_found()
    if job.status is JobStatus.CANCELLED:
        return _cancelled(job, {})
    return JSONResponse(job.status_document(state.time_left(view)))


def _cancelled(job: Job, headers: dict[str, str]) -> Response:
    """A cancelled job is gone (DELETE succeeded), on every path under it: 410, with its
    status document beside the error so a client still sees when it was cancelled."""
    gone = Gone(ErrorCode.JOB_CANCELLED, "the job was cancelled before it ran")
    body = {**gone.to_dict(), "job": job.status_document()}
    return JSONResponse(body, status_code=gone.status, headers=headers)


async def list_fonts(request: Request) -> Response:
    return JSONResponse({"default": DEFAULT_FONT, "fonts": sorted(FONT_FILES)})


async def healthz(request: Request) -> Response:
    """200 when Redis answers (else 503 `redis_unavailable`, within the deadline), with every
    live worker's sandbox layers: a weakened one is shown, never hidden."""
    workers = await front(request).store.worker_reports()
    sandbox = isolation(workers)
    return JSONResponse(
        {
            "status": "ok",
            "redis": "ok",
            "sandbox": sandbox.status,
            "sandbox_weakened": sandbox.weakened,
            "workers": workers,
        }
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(front(request).settings))


async def _wait_for_job(state: FrontState, job_id: str, wait: int) -> JobView:
    """The job (and its result), after waiting up to `wait` seconds for it to end, woken by
    pub/sub: one read of Redis when it has ended, two when it is waited for. 404 when the
    job is unknown or expired."""
    with state.events.waiter(job_id) as finished:
        # Registered before the read, so a job ending in between is not missed.
        view = await state.store.job_view(job_id)
        waiting = wait and view.job is not None and not view.job.is_final
        if waiting and await _ends_within(finished, wait):
            view = await state.store.job_view(job_id)
    if view.job is None:
        raise _job_not_found()
    return view


async def _ends_within(finished: asyncio.Event, seconds: int) -> bool:
    try:
        await asyncio.wait_for(finished.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _job_id(request: Request) -> str:
    job_id: str = request.path_params["job_id"]
    if not is_job_id(job_id):
        raise _job_not_found()
    return job_id


def _wait_seconds(request: Request, settings: Settings) -> int:
    wait = whole_number(request.query_params.get("wait", "0"))
    if wait is None or wait > settings.max_wait:
        raise InvalidRequest(
            ErrorCode.INVALID_PARAMETER,
            f"'wait' must be a whole number of seconds from 0 to {settings.max_wait}",
            "wait",
        )
    return wait


def _job_not_found() -> NotFound:
    return NotFound(ErrorCode.JOB_NOT_FOUND, "no such job: the id is unknown or has expired")


ROUTES = [
    Route("/jobs", create_job, methods=["POST"]),
    Route("/jobs/{job_id}", job_route, methods=["GET", "DELETE"]),
    Route("/jobs/{job_id}/status", get_job_status, methods=["GET"]),
    Route("/fonts", list_fonts, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/metrics", metrics_route, methods=["GET"]),
]
