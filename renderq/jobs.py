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
from enum import StrEnum
from typing import Any, Final

from renderq.vocabulary import JobKind

JOB_ID_BYTES: Final = 16  # 128 random bits: holding the id is what grants access to the result
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES: Final = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


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

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_redis(self) -> dict[Any, str]:
        """The hash fields stored in Redis; None values are left out."""
        fields: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "engine": self.engine,
            "format": self.format,
            "request": json.dumps(self.request, separators=(",", ":")),
            "status": str(self.status),
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }
        return {k: str(v) for k, v in fields.items() if v is not None}

    @classmethod
    def from_redis(cls, raw: Mapping[Any, Any]) -> Job:
        data = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            id=data["id"],
            kind=JobKind(data["kind"]),
            engine=data["engine"],
            format=data["format"],
            request=json.loads(data["request"]),
            status=JobStatus(data["status"]),
            queued_at=float(data["queued_at"]),
            started_at=_optional_float(data.get("started_at")),
            finished_at=_optional_float(data.get("finished_at")),
            attempts=int(data.get("attempts", "0")),
            error_code=data.get("error_code"),
            error_message=data.get("error_message"),
        )

    def status_document(self) -> dict[str, Any]:
        """What `GET /jobs/<id>/status` answers, in every state."""
        error = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message}
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
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
