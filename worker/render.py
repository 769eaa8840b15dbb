"""Turn a job taken from the queue into image bytes, validating its request again first."""

from __future__ import annotations

from renderq.errors import ErrorCode, InvalidRequest
from renderq.image_header import probe_image
from renderq.image_request import parse_image_request
from renderq.jobs import Job
from renderq.settings import Settings
from renderq.text_request import parse_text_request
from worker.engines import IMAGE_TRANSFORMERS, TEXT_RENDERERS
from worker.layout import layout_text


def render_job(job: Job, settings: Settings, upload: bytes | None) -> bytes:
    """The encoded image for `job`; raises a `RenderqError` whose code the job fails with."""
    if job.kind == "text":
        request = parse_text_request(job.request, settings)
        layout = layout_text(request, settings)
        return TEXT_RENDERERS[request.engine](layout, request)
    if job.kind == "image":
        if upload is None:
            raise InvalidRequest(ErrorCode.INVALID_JOB, "the uploaded image has expired")
        image_request = parse_image_request(job.request, probe_image(upload), settings)
        return IMAGE_TRANSFORMERS[image_request.engine](upload, image_request, settings)
    raise InvalidRequest(ErrorCode.INVALID_JOB, f"unknown job kind {job.kind!r}")
