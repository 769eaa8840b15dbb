"""The HTTP routes: submit a job, poll it, read its status, list fonts, health, OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
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
from renderq.font_coverage import font_manifest
from renderq.fonts import DEFAULT_FONT, FONT_FILES
from renderq.image_header import probe_image
from renderq.image_request import parse_image_request
from renderq.job_tags import JobTags
from renderq.jobs import Job, is_job_id, new_job_id
from renderq.logs import log_event
from renderq.queue_protocol import Idempotency
from renderq.rate_limit import Bucket, take_token_call
from renderq.settings import Settings
from renderq.tenants import scoped_idempotency_key
from renderq.text_request import parse_text_request
from renderq.time_left import TimeLeft
from renderq.validation import whole_number
from renderq.vocabulary import OUTPUT_MEDIA_TYPES, JobKind, JobStatus
from service.body import read_json_body
from service.events import JobEvents
from service.headers import idempotency_key, matches_etag, preferred_wait
from service.metrics import FrontCounts, metrics_route
from service.openapi import openapi_document
from service.queue import JobStore, JobView, run_script
from service.result_links import LinkSigner
from service.tenancy import Tenant, Tenants, tenant_of
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
    tenants: Tenants
    links: LinkSigner

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
        rate = self.counts.jobs_per_second
        return TimeLeft.of(job.seq, view.started_seq, rate, view.tenants)

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
    tenant = tenant_of(request)
    bucket = await _take_token(state, tenant)
    if bucket is not None and not bucket.taken:
        headers = {"Retry-After": str(bucket.retry_after), **bucket.headers()}
        return error_response(bucket.refusal(), headers)
    wait = preferred_wait(request, state.settings.max_wait)
    if wait is None:
        response = _accepted(state, await _queue_job(request, state, tenant, new_job_id()))
    else:
        response = await _queue_and_wait(request, state, tenant, wait)
    if bucket is not None:
        response.headers.update(bucket.headers())
    return response


async def _take_token(state: FrontState, tenant: Tenant) -> Bucket | None:
    """A submission's token from the tenant's bucket (see `renderq.rate_limit`): the one
    Redis round trip a rate adds to a POST; None when the tenant's key sets no rate."""
    limits = tenant.limits
    if not limits.rate:
        return None
    store = state.store
    call = take_token_call(store.keys, tenant.name, limits.rate, limits.burst)
    reply = await store.guarded(run_script, store.redis, call)
    return Bucket.of(reply, limits.rate, limits.burst)


def _accepted(state: FrontState, view: JobView) -> Response:
    assert view.job is not None
    return state.not_ready(view, {"Location": f"/jobs/{view.job.id}"})


async def _queue_and_wait(
    request: Request, state: FrontState, tenant: Tenant, wait: int
) -> Response:
    """Prefer: wait (RFC 7240): the job is queued and rendered as any other; only the waiting
    moves into this request, saving the client its first poll.

    The waiting starts before the job is queued, so a job that ends at once is not missed and
    nothing needs reading back first. The job is queued whatever happens while waiting, so a
    Redis that fails then gets the plain 202, not an error that would make the client queue
    it again.
    """
    job_id = new_job_id()
    with state.events.waiter(job_id) as finished:
        queued = await _queue_job(request, state, tenant, job_id)
        job = queued.job
        assert job is not None
        try:
            if job.id != job_id:  # an Idempotency-Key named an earlier job
                view = await _wait_for_job(state, tenant, job.id, wait)
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


async def _queue_job(request: Request, state: FrontState, tenant: Tenant, job_id: str) -> JobView:
    """Validate and queue the request's job as `job_id` for `tenant` (or find the one its
    Idempotency-Key names among the tenant's), and say where it stands. The upload is
    dropped on return, before any waiting."""
    upload = None
    if is_image_upload(request):
        upload, fields = await read_image_upload(request, state.settings)
        image_request = parse_image_request(fields, probe_image(upload), state.settings)
        job = _new_job(
            job_id,
            tenant,
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
            job_id,
            tenant,
            JobKind.TEXT,
            text_request.engine,
            text_request.format,
            text_request.to_json(),
        )
    key = idempotency_key(request)
    scoped = scoped_idempotency_key(tenant.name, key) if key else None
    idempotency = Idempotency.of(scoped, job.request, upload) if scoped else None
    queued = await state.store.enqueue(
        job, upload, idempotency, tenant=tenant.name, tenant_max_queued=tenant.limits.max_queued
    )
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
    # Its place in its tenant's order, and how many tenants take turns: its time left.
    queued_view = dataclasses.replace(job, seq=queued.seq)
    return JobView(queued_view, None, queued.started_seq, queued.tenants)


def _new_job(
    job_id: str, tenant: Tenant, kind: JobKind, engine: str, fmt: str, request: dict[str, Any]
) -> Job:
    return Job(
        id=job_id,
        tenant=tenant.name,
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
    # Read first: a tenant must not cancel, nor learn of, another's job.
    _owned(await state.store.job(job_id), tenant_of(request))
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
    wait = _wait_seconds(request, state.settings)
    view = await _wait_for_job(state, tenant_of(request), _job_id(request), wait)
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
        return _result_response(job, result.image, result.expires_in, headers, conditional)
    return state.not_ready(view, headers)


def _result_response(
    job: Job, image: bytes, max_age: int, headers: dict[str, str], conditional: Request | None
) -> Response:
    """A done job's image, cacheable for `max_age` seconds; 304 when `conditional` names it in
    If-None-Match."""
    # A job renders once and its result never changes: the id is a strong validator.
    headers["ETag"] = f'"{job.id}"'
    headers["Cache-Control"] = f"private, max-age={max_age}, immutable"
    if conditional is not None and matches_etag(conditional, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(image, media_type=OUTPUT_MEDIA_TYPES[job.format], headers=headers)


async def get_job_status(request: Request) -> Response:
    state = front(request)
    link_ttl = _link_ttl(request, state.settings)
    tenant = tenant_of(request)
    # Read in the caller's tenant's order: its own job's place costs no second read.
    view = await state.store.job_view(_job_id(request), with_result=False, tenant=tenant.name)
    job = _owned(view.job, tenant)
    if job is None:
        raise _job_not_found()
    if job.status is JobStatus.CANCELLED:
        return _cancelled(job, {})
    document = job.status_document(state.time_left(view))
    if job.status is JobStatus.DONE and state.links.enabled and job.finished_at is not None:
        # The result lives `result_ttl` from its end (see the END script): no link outlives it.
        expires = min(time.time() + link_ttl, job.finished_at + state.settings.result_ttl)
        document["result_url"] = state.links.url(job.id, int(expires))
    return JSONResponse(document)


async def get_result(request: Request) -> Response:
    """`/results/<id>?expires=…&sig=…`: a done job's image for whoever holds the signed link,
    without an API key (an `<img src>` sends none). 403 when altered or expired."""
    state = front(request)
    job_id: str = request.path_params["job_id"]
    if not state.links.enabled:
        raise _job_not_found()
    query = request.query_params
    expires = state.links.verify(job_id, query.get("expires"), query.get("sig"))
    view = await state.store.job_view(_job_id(request))
    job, result = view.job, view.result
    if job is None or result is None or job.status is not JobStatus.DONE:
        raise _job_not_found()
    max_age = max(0, min(result.expires_in, expires - int(time.time())))
    return _result_response(job, result.image, max_age, {}, request)


def _cancelled(job: Job, headers: dict[str, str]) -> Response:
    """A cancelled job is gone (DELETE succeeded), on every path under it: 410, with its
    status document beside the error so a client still sees when it was cancelled."""
    gone = Gone(ErrorCode.JOB_CANCELLED, "the job was cancelled before it ran")
    body = {**gone.to_dict(), "job": job.status_document()}
    return JSONResponse(body, status_code=gone.status, headers=headers)


async def list_fonts(request: Request) -> Response:
    """The fonts a request may name, the fallback chain, and each font's scripts (read from
    the fonts' cmaps once, in a thread: the first call reads every font)."""
    manifest = await run_in_threadpool(font_manifest, front(request).settings.font_dir)
    return JSONResponse({"default": DEFAULT_FONT, "fonts": sorted(FONT_FILES), **manifest})


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


async def _wait_for_job(state: FrontState, tenant: Tenant, job_id: str, wait: int) -> JobView:
    """The job (and its result), after waiting up to `wait` seconds for it to end, woken by
    pub/sub: one read of Redis when it has ended, two when it is waited for. 404 when the
    job is unknown, expired or another tenant's (found out before waiting, which would
    otherwise tell that it exists)."""
    with state.events.waiter(job_id) as finished:
        # Registered before the read, so a job ending in between is not missed.
        view = await state.store.job_view(job_id, tenant=tenant.name)
        if _owned(view.job, tenant) is None:
            raise _job_not_found()
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


def _owned(job: Job | None, tenant: Tenant) -> Job | None:
    """`job` if it belongs to `tenant`; else 404, as for a job that does not exist."""
    if job is not None and job.tenant != tenant.name:
        raise _job_not_found()
    return job


def _link_ttl(request: Request, settings: Settings) -> int:
    """`?link_ttl=`: seconds the status document's `result_url` should last, at most
    `RENDERQ_RESULT_LINK_TTL` (and never beyond the result's expiry)."""
    raw = request.query_params.get("link_ttl")
    if raw is None:
        return settings.result_link_ttl
    seconds = whole_number(raw)
    if seconds is None or not 1 <= seconds <= settings.result_link_ttl:
        raise InvalidRequest(
            ErrorCode.INVALID_PARAMETER,
            f"'link_ttl' must be a whole number of seconds from 1 to {settings.result_link_ttl}",
            "link_ttl",
        )
    return seconds


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
    Route("/results/{job_id}", get_result, methods=["GET"]),
    Route("/fonts", list_fonts, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/metrics", metrics_route, methods=["GET"]),
]
