"""What a job gives back: its `Status` while it runs, its `Result` (the image) once done."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from renderq.vocabulary import FINAL_STATUSES, OUTPUT_MEDIA_TYPES

_FORMATS: Final = {media_type: name for name, media_type in OUTPUT_MEDIA_TYPES.items()}
_EXTENSIONS: Final = {"jpeg": ".jpg"}


@dataclass(frozen=True)
class Result:
    """A rendered image: its bytes and media type, and the job that made it."""

    content: bytes
    content_type: str
    job_id: str | None = None

    @property
    def format(self) -> str:
        """`png`, `jpeg`, `webp`, `gif` or `avif`, as the request's `format` names it."""
        media_type = self.content_type.split(";")[0].strip().lower()
        return _FORMATS.get(media_type, media_type.rpartition("/")[2])

    @property
    def extension(self) -> str:
        """The usual file extension of the format, with its dot (`.jpg` for JPEG)."""
        return _EXTENSIONS.get(self.format, f".{self.format}")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image to `path` and return it. Written beside it first and renamed, so a
        reader never sees half a file and an interrupted save leaves nothing."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.part")
        try:
            partial.write_bytes(self.content)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return target


@dataclass(frozen=True)
class Status:
    """A job's status document (`GET /jobs/<id>/status`); `document` holds it whole.
    `position` and `eta_seconds` are known only while the job is queued (`eta_seconds` is
    None when no job ended lately: the server has no rate to go by)."""

    id: str
    state: str  # queued, running, done, failed, cancelled
    kind: str
    engine: str
    format: str
    attempts: int
    error_code: str | None = None
    error_message: str | None = None
    position: int | None = None
    eta_seconds: float | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATUSES

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Status:
        error = document.get("error") or {}
        return cls(
            id=str(document["id"]),
            state=str(document["status"]),
            kind=str(document.get("kind", "")),
            engine=str(document.get("engine", "")),
            format=str(document.get("format", "")),
            attempts=int(document.get("attempts") or 0),
            error_code=error.get("code"),
            error_message=error.get("message"),
            position=document.get("position"),
            eta_seconds=document.get("eta_seconds"),
            document=document,
        )
