"""What `GET /dashboard/state` answers: the queue now and over the last minutes, render times,
the workers, the latest failures and the dead letters, all read from Redis.

One pipeline reads everything but the dead-lettered jobs' hashes (a second round trip, for
the few shown) and the workers' reports (`JobStore.worker_reports`). Job ids never leave
this module: a job is named by its tag, as in the logs, and a dead letter by its entry id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from renderq.job_events import EventKind, JobEvent
from renderq.job_tags import as_text
from renderq.jobs import Job
from renderq.keys import Keys
from renderq.metrics import ENDED, SUBMITTED, parse_sample_name, stored_samples
from service.queue import load_jobs, load_queue_depth
from service.workers import weakened_layers

WINDOW_SECONDS: Final = 300  # the chart covers the last five minutes...
STEP_SECONDS: Final = 5  # ...one point per five seconds
EVENTS_READ: Final = 2000  # the newest job events, for render times and failures
FAILURES_SHOWN: Final = 10
DEAD_LETTERS_SHOWN: Final = 20


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    job_id: str
    job: Job | None  # None once expired


@dataclass(frozen=True)
class QueueReading:
    """The raw replies, decoded; `ended` and `depths` have one value per second of the
    window, oldest first (a depth is None where no front took a sample)."""

    now: float
    depth: int
    running: int
    dead_count: int
    dead_letters: list[DeadLetter]
    events: list[JobEvent]  # newest first
    ended: list[int]
    depths: list[int | None]
    metrics: dict[str, float]
    consumers: dict[str, int]  # every consumer of the group, and the entries it holds


async def read_queue(redis: Redis, keys: Keys, now: float) -> QueueReading:
    """Everything the dashboard shows but the workers' reports, in three round trips."""
    seconds = _window(now)
    depth = await load_queue_depth(redis, keys)  # over every tenant's stream
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(keys.dead_letters)
        pipe.xrange(keys.dead_letters, count=DEAD_LETTERS_SHOWN)
        pipe.xrevrange(keys.events, count=EVENTS_READ)
        pipe.mget([keys.ended_in_second(second) for second in seconds])
        pipe.mget([keys.depth_in_second(second) for second in seconds])
        pipe.hgetall(keys.metrics)
        replies = await pipe.execute(raise_on_error=False)
    dead_count, dead, events, ended, depths, metrics = replies
    return QueueReading(
        now=now,
        depth=depth.entries,
        running=depth.running,
        dead_count=_count(dead_count),
        dead_letters=await _dead_letters(redis, keys, _checked(dead)),
        # The events are recorded best effort (see `renderq.queue_protocol`): an events key
        # Redis cannot read as a stream shows as no events, not as a broken page.
        events=[
            JobEvent.parse(fields)
            for _id, fields in ([] if isinstance(events, ResponseError) else events)
        ],
        ended=[_count(value) for value in _checked(ended)],
        depths=[None if value is None else _count(value) for value in _checked(depths)],
        metrics=stored_samples(_checked(metrics)),
        consumers=depth.held,
    )


async def _dead_letters(
    redis: Redis, keys: Keys, entries: Sequence[tuple[Any, Mapping[Any, Any]]]
) -> list[DeadLetter]:
    ids = [(as_text(entry_id), as_text(fields[b"id"])) for entry_id, fields in entries]
    if not ids:
        return []
    jobs = await load_jobs(redis, keys, [job_id for _entry_id, job_id in ids])
    return [
        DeadLetter(entry_id, job_id, job) for (entry_id, job_id), job in zip(ids, jobs, strict=True)
    ]


def queue_summary(reading: QueueReading) -> dict[str, Any]:
    """The numbers at the top of the page: now, and since the metrics began."""
    return {
        "depth": reading.depth,
        "running": reading.running,
        "waiting": max(0, reading.depth - reading.running),
        "dead_letters": reading.dead_count,
        "totals": totals(reading.metrics),
    }


def totals(metrics: Mapping[str, float]) -> dict[str, int]:
    """Jobs submitted, done and failed, added up over kinds and engines."""
    sums = {"submitted": 0, "done": 0, "failed": 0}
    for sample, value in metrics.items():
        name, labels = parse_sample_name(sample)
        if name == SUBMITTED.name:
            sums["submitted"] += int(value)
        elif name == ENDED.name and labels.get("outcome") in sums:
            sums[labels["outcome"]] += int(value)
    return sums


def series(reading: QueueReading) -> dict[str, Any]:
    """The chart: per `STEP_SECONDS`, the jobs ended and the deepest queue a front saw. The
    newest point's depth is the stream's length now when no front sampled it."""
    points = []
    first = _window(reading.now)[0]
    for start in range(0, WINDOW_SECONDS, STEP_SECONDS):
        samples = [d for d in reading.depths[start : start + STEP_SECONDS] if d is not None]
        points.append(
            {
                "at": first + start,
                "ended": sum(reading.ended[start : start + STEP_SECONDS]),
                "depth": max(samples) if samples else None,
            }
        )
    if points and points[-1]["depth"] is None:
        points[-1]["depth"] = reading.depth
    return {"step_seconds": STEP_SECONDS, "points": points}


def render_times(events: Sequence[JobEvent]) -> dict[str, dict[str, float]]:
    """p50 and p95 of the render time of the jobs done among `events`, by engine."""
    by_engine: dict[str, list[float]] = {}
    for event in events:
        if event.event is EventKind.ENDED:
            by_engine.setdefault(event.engine, []).append(event.duration_ms)
    return {
        engine: {
            "p50_ms": percentile(durations, 0.50),
            "p95_ms": percentile(durations, 0.95),
            "count": len(durations),
        }
        for engine, durations in sorted(by_engine.items())
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: a value that was observed, never one interpolated between two."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def failures(events: Sequence[JobEvent]) -> list[dict[str, Any]]:
    """The newest failures, newest first, each marked if it put its job on the dead letters
    (a script appends `dead_lettered` right after that job's `failed`)."""
    dead = {event.job for event in events if event.event is EventKind.DEAD_LETTERED}
    found = [
        {**event.as_dict(), "dead_lettered": event.job in dead}
        for event in events
        if event.event is EventKind.FAILED
    ]
    return found[:FAILURES_SHOWN]


def workers(
    reports: Sequence[Mapping[str, Any]], consumers: Mapping[str, int], now: float
) -> list[dict[str, Any]]:
    """Every live worker from its report, then every dead one still holding jobs (they go
    back on the queue once its lease has expired, see `worker.reclaim`)."""
    rows = [_live_worker(report, consumers, now) for report in reports]
    live = {row["name"] for row in rows}
    rows += [
        {"name": name, "alive": False, "holding": held}
        for name, held in sorted(consumers.items())
        if held and name not in live
    ]
    return rows


def _live_worker(
    report: Mapping[str, Any], consumers: Mapping[str, int], now: float
) -> dict[str, Any]:
    name = str(report.get("consumer", "?"))
    started = report.get("job_started_at")
    since = report.get("started_at")
    return {
        "name": name,
        "alive": True,
        "holding": consumers.get(name, 0),
        "weakened": weakened_layers(report),
        "jobs_done": report.get("jobs_done"),
        "job": report.get("job"),
        "job_seconds": None if started is None else max(0.0, now - float(started)),
        "rss_bytes": report.get("rss_bytes"),
        "peak_rss_bytes": report.get("peak_rss_bytes"),
        "up_seconds": None if since is None else max(0.0, now - float(since)),
    }


def _window(now: float) -> list[int]:
    """The Unix seconds of the window, oldest first, ending with the current one."""
    last = int(now)
    return list(range(last - WINDOW_SECONDS + 1, last + 1))


def _checked(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def _count(value: Any) -> int:
    return int(_checked(value) or 0)
