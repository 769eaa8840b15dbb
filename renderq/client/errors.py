"""What the client raises: one exception class per kind of answer, each carrying the API's
error code, so callers branch on `.code` (a value of `renderq.errors.ErrorCode`, stable across
versions) or on the class, never on messages.

These are the client's own classes, not the server's `renderq.errors.RenderqError` family:
an application catches `renderq.client.RenderqError` and nothing of the server's comes with it.
"""

from __future__ import annotations

from typing import Any, Final

import httpx2 as httpx

from renderq.errors import RenderqError as ContractError

# Codes of failures that never reached the API (it has no word for them).
CONNECTION_FAILED: Final = "connection_failed"
WAIT_TIMEOUT: Final = "wait_timeout"
UNEXPECTED_ANSWER: Final = "unexpected_answer"


class RenderqError(Exception):
    """Base of everything the client raises. `status` is the HTTP status the error came with
    (None when no answer came); `job_id` names the job when the error is a job's."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        *,
        status: int | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" ({field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field
        self.status = status
        self.job_id = job_id


class BadRequest(RenderqError):
    """400: the request could not be read (malformed JSON or form, a bad header)."""


class Unauthorized(RenderqError):
    """401: a token was needed, or the one given is wrong."""


class Forbidden(RenderqError):
    """403: refused whatever the token (the action is switched off in this deployment)."""


class NotFound(RenderqError):
    """404: no such job (unknown, or expired after `RENDERQ_RESULT_TTL`), or dead letter."""


class Conflict(RenderqError):
    """409: the job is running or has ended, so it cannot be cancelled."""


class JobCancelled(RenderqError):
    """410: the job was cancelled; `job` is its status document."""

    def __init__(self, *args: Any, job: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job = job


class PayloadTooLarge(RenderqError):
    """413: the upload or body passed the server's limit."""


class UnsupportedMediaType(RenderqError):
    """415: not an image format renderq reads (decided from the bytes, not the name)."""


class InvalidRequest(RenderqError):
    """422 at submit: a field breaks a rule (raised before sending when the client can tell)."""


class JobFailed(RenderqError):
    """The job was queued, then failed: 422 when its input was at fault (`image_too_large`,
    `invalid_image`...), 500 when renderq was (`render_failed`...)."""

    @property
    def input_fault(self) -> bool:
        return self.status == 422


class ServerError(RenderqError):
    """5xx (but 503): renderq failed to handle the request."""


class TooManyRequests(RenderqError):
    """429 (`rate_limited`, `tenant_queue_full`: this client's own limits, with API keys)
    still answered when the client's retries ran out."""


class Unavailable(RenderqError):
    """503 (`redis_unavailable`, `queue_full`, `not_replicated`) still answered when the
    client's retries ran out."""


class ConnectionFailed(RenderqError):
    """No answer came (refused connection, reset, timeout), retries included."""


class WaitTimeout(RenderqError, TimeoutError):
    """The job did not end within the time given to `wait`; it is still queued or running."""


_BY_STATUS: Final[dict[int, type[RenderqError]]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: JobCancelled,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: TooManyRequests,
    503: Unavailable,
}


def error_from(
    response: httpx.Response, job_id: str | None = None, *, job_answer: bool = False
) -> RenderqError:
    """The exception for an error answer. With `job_answer` (a poll, or a `Prefer: wait`
    POST that waited), a 422 or 500 naming no request field is the job's own failure."""
    code, message, field = _error_body(response)
    status = response.status_code
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else RenderqError)
    if job_answer and status in (422, 500) and field is None:
        kind = JobFailed
    if kind is JobCancelled:
        job = _json(response).get("job")
        return JobCancelled(code, message, field, status=status, job_id=job_id, job=job)
    return kind(code, message, field, status=status, job_id=job_id)


def _error_body(response: httpx.Response) -> tuple[str, str, str | None]:
    error = _json(response).get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        field = error.get("field")
        return (
            error["code"],
            str(error.get("message", "")),
            field if isinstance(field, str) else None,
        )
    # Not renderq's answer (a proxy's error page): say what came.
    return UNEXPECTED_ANSWER, f"HTTP {response.status_code}: {response.text[:200]}", None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class RefusedBeforeSending(InvalidRequest):
    """A rule of the API broken in the arguments themselves, found by the client before
    anything was sent (the command line's bad usage)."""


def refusal(exc: ContractError) -> InvalidRequest:
    """The client's error for a rule of the contract broken before sending, with the code,
    field and status the server would have answered."""
    return RefusedBeforeSending(str(exc.code), exc.message, exc.field, status=exc.status)
