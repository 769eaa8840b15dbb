"""The job record kept in Redis, and the status document clients read.

A job is one Redis hash (see `Keys.job`); the stream only carries its id. Values are JSON text,
never pickle, so anything can read them.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from renderq.job_tags import as_text
from renderq.queue_protocol import JobField
from renderq.tenants import DEFAULT_TENANT
from renderq.time_left import TimeLeft
from renderq.vocabulary import FINAL_STATUSES, JobKind, JobStatus

JOB_ID_BYTES: Final = 16  # 128 random bits: holding the id is what grants access to the result
JOB_ID_PATTERN: Final = "[A-Za-z0-9_-]{22}"  # what token_urlsafe(16) makes
_JOB_ID = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    return secrets.token_urlsafe(JOB_ID_BYTES)


def is_job_id(text: str) -> bool:
    """Whether `text` has the shape of a job id (checked before it is used in a key)."""
    return _JOB_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    engine: str
    format: str
    request: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    # Its number in the order jobs were put on the stream, given by the queue.
    seq: int | None = None
    tenant: str = DEFAULT_TENANT

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_redis(self) -> dict[Any, str]:
        """The hash fields stored in Redis; None values are left out."""
        fields: dict[str, Any] = {
            JobField.ID: self.id,
            JobField.KIND: self.kind,
            JobField.ENGINE: self.engine,
            JobField.FORMAT: self.format,
            JobField.REQUEST: json.dumps(self.request, separators=(",", ":")),
            JobField.STATUS: self.status,
            JobField.QUEUED_AT: self.queued_at,
            JobField.STARTED_AT: self.started_at,
            JobField.FINISHED_AT: self.finished_at,
            JobField.ATTEMPTS: self.attempts,
            JobField.ERROR_CODE: self.error_code,
            JobField.ERROR_MESSAGE: self.error_message,
            JobField.SEQ: self.seq,
            JobField.TENANT: self.tenant,
        }
        return {str(k): str(v) for k, v in fields.items() if v is not None}

    @classmethod
    def from_redis(cls, raw: Mapping[Any, Any]) -> Job:
        """The job from its hash; a hash read without its request (see `STATUS_FIELDS`)
        gives a job whose request is empty."""
        data = {as_text(k): as_text(v) for k, v in raw.items() if v is not None}
        request = data.get(JobField.REQUEST)
        return cls(
            id=data[JobField.ID],
            kind=JobKind(data[JobField.KIND]),
            engine=data[JobField.ENGINE],
            format=data[JobField.FORMAT],
            request=json.loads(request) if request is not None else {},
            status=JobStatus(data[JobField.STATUS]),
            queued_at=float(data[JobField.QUEUED_AT]),
            started_at=_optional_float(data.get(JobField.STARTED_AT)),
            finished_at=_optional_float(data.get(JobField.FINISHED_AT)),
            attempts=int(data.get(JobField.ATTEMPTS, "0")),
            error_code=data.get(JobField.ERROR_CODE),
            error_message=data.get(JobField.ERROR_MESSAGE),
            seq=_optional_int(data.get(JobField.SEQ)),
            tenant=data.get(JobField.TENANT, DEFAULT_TENANT),
        )

    def status_document(self, time_left: TimeLeft | None = None) -> dict[str, Any]:
        """What `GET /jobs/<id>/status` answers, in every state; `position` and `eta_seconds`
        while the job is queued, when the caller knows them."""
        error = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message}
        progress: dict[str, Any] = {}
        if time_left is not None and self.status is JobStatus.QUEUED:
            progress = {"position": time_left.position, "eta_seconds": time_left.eta_seconds}
        return {
            "id": self.id,
            "status": str(self.status),
            "ready": self.status is JobStatus.DONE,
            "kind": self.kind,
            "engine": self.engine,
            "format": self.format,
            "queued_at": _iso(self.queued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "attempts": self.attempts,
            "error": error,
            **progress,
        }


# Every field a status document needs: what a poll reads, without the request.
STATUS_FIELDS: Final = tuple(
    str(field)
    for field in JobField
    if field not in (JobField.REQUEST, JobField.DELIVERY, JobField.ENDED_BY, JobField.ENTRY)
)


def _optional_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
