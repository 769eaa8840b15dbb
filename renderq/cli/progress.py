"""A batch's progress: what is done, failed, in flight, and how long the rest should take;
shown as a rich progress bar on a terminal, one line per image otherwise, JSON with `--json`.

The time left follows the server where it can: each queued job's status carries the server's
`eta_seconds` (its place in the queue over the rate jobs end at). Images not yet submitted
are counted at the rate observed so far; with no `eta_seconds` at all, everything is.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from renderq.cli.output import Output, describe, error_json
from renderq.client import AsyncJob, RenderqError, Status

TICK_SECONDS = 0.5


@dataclass
class Pending:
    """A submitted job not ended yet, and the newest status seen of it (and when)."""

    path: Path
    job: AsyncJob
    status: Status | None
    seen: float


@dataclass
class Tally:
    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failures: list[tuple[Path, RenderqError | OSError]] = field(default_factory=list)
    pending: dict[str, Pending] = field(default_factory=dict)
    submitting: set[Path] = field(default_factory=set)  # sent, no answer yet

    @property
    def ended(self) -> int:
        return self.done + len(self.failures)

    def rate(self, now: float) -> float | None:
        """Images ended per second so far."""
        elapsed = now - self.started
        return self.ended / elapsed if self.ended and elapsed > 0 else None

    def time_left(self, now: float) -> float | None:
        rate = self.rate(now)
        etas = [self._eta(pending, now) for pending in self.pending.values()]
        known = [eta for eta in etas if eta is not None]
        if not known:
            return (self.total - self.ended) / rate if rate else None
        unsubmitted = self.total - self.ended - len(self.pending)
        if unsubmitted and not rate:
            return None
        return max(known) + (unsubmitted / rate if rate else 0.0)

    def refresh(self, now: float) -> None:
        """Take in the status documents the jobs' polls brought since the last look."""
        for pending in self.pending.values():
            if pending.job.last_status is not pending.status:
                pending.status, pending.seen = pending.job.last_status, now

    @staticmethod
    def _eta(pending: Pending, now: float) -> float | None:
        if pending.status is None or pending.status.eta_seconds is None:
            return None
        return max(0.0, pending.status.eta_seconds - (now - pending.seen))


class Display:
    """Shows a batch as it goes; use as a context manager around the run."""

    def __init__(self, out: Output, tally: Tally, destination: Path) -> None:
        self.out = out
        self.tally = tally
        self.destination = destination
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if out.fancy:
            self.progress = Progress(
                TextColumn("[bold]rendering"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                console=out.console,
            )
            self.task = self.progress.add_task("images", total=tally.total, stats="")

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.update()
            self.progress.stop()

    def submitting(self, path: Path) -> None:
        self.tally.submitting.add(path)

    def queued(self, path: Path, job: AsyncJob) -> None:
        self.tally.submitting.discard(path)
        self.tally.pending[job.id] = Pending(path, job, job.last_status, time.monotonic())

    def finished(self, path: Path, job_id: str, target: Path) -> None:
        self.tally.pending.pop(job_id, None)
        self.tally.done += 1
        if self.out.as_json:
            self.out.json(
                {"input": str(path), "output": str(target), "job": job_id, "status": "done"}
            )
        elif not self.out.fancy:
            self.out.line(f"done {path} -> {target}")
        self.update()

    def failed(self, path: Path, error: RenderqError | OSError, job_id: str | None = None) -> None:
        self.tally.submitting.discard(path)
        if job_id is not None:
            self.tally.pending.pop(job_id, None)
        self.tally.failures.append((path, error))
        if self.out.as_json:
            record = {"input": str(path), "job": job_id, "status": "failed"}
            self.out.json({**record, "error": error_json(error)})
        elif self.progress is not None:
            self.progress.console.print(
                f"[red]failed[/red] {escape(str(path))}: {escape(_why(error))}"
            )
        else:
            self.out.line(f"failed {path}: {_why(error)}")
        self.update()

    def update(self) -> None:
        if self.progress is None or self.task is None:
            return
        now = time.monotonic()
        self.tally.refresh(now)
        self.progress.update(self.task, completed=self.tally.ended, stats=self.stats(now))

    def stats(self, now: float) -> str:
        tally = self.tally
        rate, left = tally.rate(now), tally.time_left(now)
        parts = [f"{len(tally.failures)} failed"]
        parts.append(f"{rate:.1f} images/s" if rate else "- images/s")
        parts.append(f"{_clock(left)} left" if left is not None else "time left unknown")
        return " · ".join(parts)

    async def ticking(self) -> None:
        """Keep the time left moving between the images' ends."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.update()

    def summary(self) -> None:
        tally = self.tally
        seconds = time.monotonic() - tally.started
        if self.out.as_json:
            counts = {"total": tally.total, "done": tally.done, "failed": len(tally.failures)}
            self.out.json({"summary": {**counts, "seconds": round(seconds, 3)}})
            return
        self.out.line(
            f"{tally.done} of {tally.total} written to {self.destination}, "
            f"{len(tally.failures)} failed, in {seconds:.1f} s",
            style="bold",
        )
        if tally.failures and self.out.fancy:
            rows = [[str(path), _why(error)] for path, error in tally.failures]
            self.out.table("failed", ["image", "why"], rows)

    def interrupted(self) -> None:
        """After Ctrl-C: which jobs are still queued or running, so none is lost track of."""
        tally = self.tally
        left = [{"job": job_id, "input": str(p.path)} for job_id, p in tally.pending.items()]
        unanswered = sorted(str(path) for path in tally.submitting)
        unsent = tally.total - tally.ended - len(left) - len(unanswered)
        if self.out.as_json:
            document: dict[str, Any] = {"jobs": left, "unanswered": unanswered, "not_sent": unsent}
            self.out.json({"interrupted": document})
            return
        self.out.error(f"interrupted: {len(left)} jobs still queued or running on the server")
        for row in left:
            self.out.line(f"still queued: {row['job']} ({row['input']})")
        if unanswered:
            self.out.line(f"sent, no answer yet (may be queued): {', '.join(unanswered)}")
        self.out.line(f"{tally.done} written, {len(tally.failures)} failed, {unsent} not sent")


def _why(error: RenderqError | OSError) -> str:
    if isinstance(error, RenderqError):
        return describe(error) + (f" [job {error.job_id}]" if error.job_id else "")
    return str(error)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"
