"""What a tap records for each job: both sides' outcomes and how far apart their images are.

One entry per job on the tap's capped comparisons stream (`Keys.tap_comparisons`), flat
string fields that `python -m worker.tap report` reads back and sums up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from renderq.job_tags import as_bytes
from renderq.vocabulary import FINAL_STATUSES, JobStatus
from worker.comparison import ImageInfo


@dataclass(frozen=True)
class Side:
    """One side's outcome for a job: production's, or the tap's.

    `status` is a job status; production's may also be `queued` or `running` (it had not
    ended when the tap stopped waiting) or `expired`.
    """

    engine: str
    status: str
    code: str | None = None  # the error code of a failed job
    image: ImageInfo | None = None  # as decoded for the comparison
    ms: float | None = None  # render time (production's: from its start to its end)

    @property
    def done(self) -> bool:
        return self.status == JobStatus.DONE

    @property
    def failed(self) -> bool:
        return self.status == JobStatus.FAILED

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_fields(self, side: str) -> dict[str, str]:
        fields: dict[str, Any] = {"engine": self.engine, "status": self.status, "code": self.code}
        fields["ms"] = None if self.ms is None else round(self.ms, 2)
        if self.image is not None:
            fields.update(self.image.to_wire())
        return {f"{side}_{name}": str(value) for name, value in fields.items() if value is not None}

    @classmethod
    def from_fields(cls, data: Mapping[str, str], side: str) -> Side:
        def get(name: str) -> str | None:
            return data.get(f"{side}_{name}")

        image = None
        fmt, width, height = get("format"), get("width"), get("height")
        if fmt is not None and width is not None and height is not None:
            image = ImageInfo(fmt, int(width), int(height))
        ms = get("ms")
        engine, status = get("engine") or "", get("status") or ""
        return cls(engine, status, get("code"), image, None if ms is None else float(ms))


@dataclass(frozen=True)
class JobComparison:
    """One job, rendered by production and by the tap. The pixel difference (0 to 255, over
    R, G, B and A) is there when both rendered an image of one size; `compare_error` is the
    code of a comparison that failed."""

    job: str  # the job's tag, never its id
    kind: str
    production: Side
    tap: Side
    diff_mean: float | None = None
    diff_max: int | None = None
    compare_error: str | None = None

    @property
    def same_size(self) -> bool | None:
        """None unless both sides have an image."""
        first, second = self.production.image, self.tap.image
        return None if first is None or second is None else first.size == second.size

    @property
    def same_format(self) -> bool | None:
        first, second = self.production.image, self.tap.image
        return None if first is None or second is None else first.format == second.format

    def to_fields(self) -> dict[str, str]:
        fields: dict[str, Any] = {"job": self.job, "kind": self.kind}
        fields |= {"diff_mean": self.diff_mean, "diff_max": self.diff_max}
        fields["compare_error"] = self.compare_error
        flat = {name: str(value) for name, value in fields.items() if value is not None}
        return flat | self.production.to_fields("production") | self.tap.to_fields("tap")

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> JobComparison:
        """From a stream entry's fields, as bytes or text."""
        data = {as_bytes(k).decode(): as_bytes(v).decode() for k, v in raw.items()}
        mean, largest = data.get("diff_mean"), data.get("diff_max")
        return cls(
            job=data.get("job", "-"),
            kind=data.get("kind", ""),
            production=Side.from_fields(data, "production"),
            tap=Side.from_fields(data, "tap"),
            diff_mean=None if mean is None else float(mean),
            diff_max=None if largest is None else int(largest),
            compare_error=data.get("compare_error"),
        )


@dataclass(frozen=True)
class Summary:
    """A tap's comparisons summed up: how often the new code agrees with production."""

    jobs: int
    both_images: int  # jobs where both sides have an image: the size and format counts' base
    same_size: int
    same_format: int
    pixels_compared: int
    diff_mean: float | None  # the mean of the jobs' mean differences
    diff_max: int | None
    production_failed: int
    tap_failed: int
    outcome_differs: int  # production ended, and one side is done, the other not
    production_not_ended: int  # not ended (or expired) when the tap stopped waiting
    compare_failed: int

    @classmethod
    def of(cls, records: Sequence[JobComparison]) -> Summary:
        with_images = [r for r in records if r.same_size is not None]
        diffs = [r for r in records if r.diff_mean is not None]
        ended = [r for r in records if r.production.ended]
        return cls(
            jobs=len(records),
            both_images=len(with_images),
            same_size=sum(1 for r in with_images if r.same_size),
            same_format=sum(1 for r in with_images if r.same_format),
            pixels_compared=len(diffs),
            diff_mean=sum(r.diff_mean or 0.0 for r in diffs) / len(diffs) if diffs else None,
            diff_max=max((r.diff_max or 0 for r in diffs), default=None),
            production_failed=sum(1 for r in records if r.production.failed),
            tap_failed=sum(1 for r in records if r.tap.failed),
            outcome_differs=sum(1 for r in ended if r.production.done != r.tap.done),
            production_not_ended=len(records) - len(ended),
            compare_failed=sum(1 for r in records if r.compare_error is not None),
        )
