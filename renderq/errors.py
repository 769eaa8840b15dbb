"""Error types with stable codes, shared by the front (HTTP answers) and the worker (failed jobs).

A client sees `{"error": {"code", "message", "field"}}`; `code` is one of `ErrorCode` and never
changes meaning, so clients branch on it instead of on messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    # The request itself.
    INVALID_JSON = "invalid_json"
    INVALID_FORM = "invalid_form"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    INVALID_TYPE = "invalid_type"
    OUT_OF_RANGE = "out_of_range"
    TEXT_TOO_LONG = "text_too_long"
    INVALID_TEXT = "invalid_text"
    UNKNOWN_ENGINE = "unknown_engine"
    UNKNOWN_FONT = "unknown_font"
    UNKNOWN_FORMAT = "unknown_format"
    # A format renderq writes, but not with the engine asked for (see renderq.engine_formats).
    UNSUPPORTED_FORMAT = "unsupported_format"
    INVALID_COLOR = "invalid_color"
    INVALID_PARAMETER = "invalid_parameter"
    UNKNOWN_OPERATION = "unknown_operation"
    UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
    INVALID_IMAGE = "invalid_image"
    ANIMATED_IMAGE = "animated_image"
    # Jobs.
    JOB_NOT_FOUND = "job_not_found"
    IMAGE_TOO_LARGE = "image_too_large"
    INVALID_JOB = "invalid_job"
    RENDER_FAILED = "render_failed"
    RENDER_TIMEOUT = "render_timeout"
    RENDER_MEMORY = "render_memory"
    RENDER_CRASHED = "render_crashed"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    JOB_CANCELLED = "job_cancelled"
    JOB_NOT_CANCELLABLE = "job_not_cancellable"
    QUEUE_FULL = "queue_full"
    # One tenant's own cap of waiting jobs (`--max-queued` of its key), not the whole queue's.
    TENANT_QUEUE_FULL = "tenant_queue_full"
    # A client's own submission rate (its API key's `--rate`), not the whole queue's.
    RATE_LIMITED = "rate_limited"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_HEADER = "invalid_header"
    UNSAFE_TEXT = "unsafe_text"
    # A character no shipped font has; a script the chosen engine cannot draw correctly.
    UNSUPPORTED_CHARACTER = "unsupported_character"
    UNSUPPORTED_SCRIPT = "unsupported_script"
    # renderq itself.
    REDIS_UNAVAILABLE = "redis_unavailable"
    NOT_REPLICATED = "not_replicated"
    INTERNAL_ERROR = "internal_error"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # Operators' actions (the dashboard's requeue).
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    DEAD_LETTER_NOT_FOUND = "dead_letter_not_found"
    # Signed result links (`/results/<id>`).
    INVALID_SIGNATURE = "invalid_signature"
    LINK_EXPIRED = "link_expired"


# A job that failed with one of these failed because of what the client sent: the poll answers
# 422. Any other failure code is renderq's own fault and answers 500.
INPUT_FAULT_CODES = frozenset(
    {
        ErrorCode.IMAGE_TOO_LARGE,
        ErrorCode.INVALID_JOB,
        ErrorCode.TEXT_TOO_LONG,
        ErrorCode.INVALID_TEXT,
        ErrorCode.UNKNOWN_FONT,
        ErrorCode.OUT_OF_RANGE,
        ErrorCode.INVALID_COLOR,
        ErrorCode.UNKNOWN_FORMAT,
        ErrorCode.UNSUPPORTED_FORMAT,
        ErrorCode.UNKNOWN_ENGINE,
        ErrorCode.INVALID_PARAMETER,
        ErrorCode.UNKNOWN_OPERATION,
        ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
        ErrorCode.INVALID_IMAGE,
        ErrorCode.ANIMATED_IMAGE,
        # A render that blows its time or memory limit was made to by its input.
        ErrorCode.RENDER_TIMEOUT,
        ErrorCode.RENDER_MEMORY,
        ErrorCode.UNSAFE_TEXT,
        ErrorCode.UNSUPPORTED_CHARACTER,
        ErrorCode.UNSUPPORTED_SCRIPT,
    }
)


class RenderqError(Exception):
    """Base of every error renderq reports; `status` is the HTTP status it answers with."""

    status = 500
    # Headers its HTTP answer carries besides the body (a 401's WWW-Authenticate).
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": str(self.code), "message": self.message, "field": self.field}}


class MalformedRequest(RenderqError):
    status = 400


class PayloadTooLarge(RenderqError):
    status = 413


class UnsupportedMediaType(RenderqError):
    status = 415


class InvalidRequest(RenderqError):
    """A well-formed request that breaks a rule: a bad value, a limit, an unknown name."""

    status = 422


class Unauthorized(RenderqError):
    """No credentials, or the wrong ones: the client may try again with the right token."""

    status = 401
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="renderq"'}


class Forbidden(RenderqError):
    """Refused whatever the credentials: the action is switched off in this deployment, the
    API key is not an admin's, or a signed link was altered or has expired."""

    status = 403


class NotFound(RenderqError):
    status = 404


class Conflict(RenderqError):
    status = 409


class Gone(RenderqError):
    status = 410


class QueueUnavailable(RenderqError):
    status = 503


class TooManyRequests(RenderqError):
    """The client's own limit (its rate, or its share of the queue): other clients are not
    held back, so this client alone must slow down."""

    status = 429


class RenderFailed(RenderqError):
    """A render that could not produce an image; stored on the job as its error."""

    status = 500


def job_error(code: str | None, message: str | None) -> RenderqError:
    """The error a failed job answers with: 422 when the client's input was at fault, else 500."""
    known = {str(c) for c in ErrorCode}
    error_code = ErrorCode(code) if code in known else ErrorCode.RENDER_FAILED
    kind = InvalidRequest if error_code in INPUT_FAULT_CODES else RenderFailed
    return kind(error_code, message or "the render failed")
