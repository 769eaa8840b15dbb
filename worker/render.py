"""Turn a job taken from the queue into image bytes, validating its request again first."""

from __future__ import annotations

from renderq.errors import ErrorCode, InvalidRequest
from renderq.jobs import Job
from renderq.settings import Settings
from renderq.text_request import parse_text_request
from worker.engines import TEXT_RENDERERS
from worker.layout import layout_text


def render_job(job: Job, settings: Settings) -> bytes:
    """The encoded image for `job`; raises a `RenderqError` whose code the job fails with."""
    if job.kind != "text":
        raise InvalidRequest(ErrorCode.INVALID_JOB, f"unknown job kind {job.kind!r}")
    request = parse_text_request(job.request, settings)
    layout = layout_text(request, settings)
    return TEXT_RENDERERS[request.engine](layout, request)
