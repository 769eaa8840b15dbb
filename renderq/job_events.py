"""Job events: every change in a job's life, appended to one capped stream (`Keys.events`).

The scripts that change a job (`renderq.queue_protocol`, whose `emit` writes the fields below)
append its event in the same atomic step, so the stream never tells a story the job hashes do
not: a job two racing workers both finish has one `ended` event. Jobs are named by their tag
(`renderq.job_tags`, which a script can compute too), as in the logs. The dashboard lists
failures and render times from it; `python -m worker.events tail` follows it live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from renderq.job_tags import as_text


class EventKind(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    RECLAIMED = "reclaimed"
    ENDED = "ended"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"
    REQUEUED = "requeued"


@dataclass(frozen=True)
class JobEvent:
    """One entry of the events stream. `duration_ms` is the render's for an end, the queue
    wait's for a start; `code` is the error code of a failure. An event this version does
    not know (written by a newer one, during an upgrade) keeps its name as a plain string."""

    event: EventKind | str
    job: str
    kind: str = ""
    engine: str = ""
    worker: str = ""
    attempt: int = 0
    duration_ms: float = 0.0
    code: str = ""
    at: float = 0.0

    @classmethod
    def parse(cls, entry: Mapping[Any, Any]) -> JobEvent:
        """An entry read back from the stream (bytes or str, as the client decodes)."""
        text = {as_text(key): as_text(value) for key, value in entry.items()}
        return cls(
            _event_kind(text["event"]),
            text.get("job", ""),
            text.get("kind", ""),
            text.get("engine", ""),
            text.get("worker", ""),
            int(text.get("attempt") or 0),
            float(text.get("duration_ms") or 0),
            text.get("code", ""),
            float(text.get("at") or 0),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": str(self.event),
            "job": self.job,
            "kind": self.kind,
            "engine": self.engine,
            "worker": self.worker,
            "attempt": self.attempt,
            "duration_ms": self.duration_ms,
            "code": self.code,
            "at": self.at,
        }


def _event_kind(name: str) -> EventKind | str:
    try:
        return EventKind(name)
    except ValueError:
        return name
