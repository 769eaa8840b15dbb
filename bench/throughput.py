"""Throughput through the queue, timed two ways.

`measure_queue` is end to end: from the first POST until every job has ended, so the front and
the HTTP client share the CPUs with the workers. `measure_drain` queues every job first while
the caller keeps the workers stopped, then times only the workers emptying the queue.

Progress is read straight from the job hashes in Redis, one pipeline every `POLL_INTERVAL`,
rather than through the front, so watching costs the front nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from bench.jobs import BenchJob
from bench.submit import Submission, http_client, submit_jobs
from renderq.keys import Keys
from renderq.vocabulary import JobStatus

POLL_INTERVAL = 0.05
# Not a performance limit: only a guard so a dead worker fails the run instead of hanging it.
STALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class QueueResult:
    jobs: int
    done: int
    failed: int
    refused: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.done / self.seconds


class Tracker:
    """Which submitted jobs have not ended yet, and how many ended each way."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.keys = Keys()
        self.pending: list[str] = []
        self.seen = 0
        self.done = 0
        self.failed = 0
        self.last_progress = time.monotonic()

    async def poll(self, redis: Redis) -> None:
        """Read the status of every pending job in one round trip; drop the ended ones."""
        self.pending += self.submission.job_ids[self.seen :]
        self.seen = len(self.submission.job_ids)
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in self.pending:
                pipe.hget(self.keys.job(job_id), "status")
            statuses: list[bytes | None] = await pipe.execute()
        still = [job_id for job_id, s in zip(self.pending, statuses, strict=True) if not _ended(s)]
        self.done += statuses.count(JobStatus.DONE.encode())
        self.failed += statuses.count(JobStatus.FAILED.encode())
        # A job whose hash is gone ended neither way: count it against the run, not as done.
        self.failed += statuses.count(None)
        if len(still) < len(self.pending):
            self.last_progress = time.monotonic()
        self.pending = still

    def check_stalled(self) -> None:
        if time.monotonic() - self.last_progress > STALL_TIMEOUT:
            raise RuntimeError(
                f"no job ended for {STALL_TIMEOUT:.0f} s; {len(self.pending)} still pending"
            )


async def measure_queue(
    base_url: str, redis_url: str, job: BenchJob, count: int, concurrency: int
) -> QueueResult:
    """Submit `count` copies of `job` while watching them; time until the last one ended."""
    submission = Submission()
    tracker = Tracker(submission)
    async with http_client(base_url, concurrency) as client, Redis.from_url(redis_url) as redis:
        started = time.perf_counter()
        submitting = asyncio.create_task(
            submit_jobs(client, job.post_arguments(), count, concurrency, submission)
        )
        try:
            await _wait_until_ended(tracker, redis, submitting)
        finally:
            submitting.cancel()
        seconds = time.perf_counter() - started
    return QueueResult(count, tracker.done, tracker.failed, submission.errors, seconds)


async def measure_drain(
    base_url: str,
    redis_url: str,
    job: BenchJob,
    count: int,
    concurrency: int,
    resume: Callable[[], None],
) -> QueueResult:
    """Queue `count` copies of `job` while the caller keeps the workers stopped, then call
    `resume` and time until the last one ended: the front serves no request while timed."""
    submission = Submission()
    async with http_client(base_url, concurrency) as client:
        await submit_jobs(client, job.post_arguments(), count, concurrency, submission)
    tracker = Tracker(submission)
    async with Redis.from_url(redis_url) as redis:
        await redis.ping()  # connect now, not inside the timed part
        resume()
        started = time.perf_counter()
        await _wait_until_ended(tracker, redis)
        seconds = time.perf_counter() - started
    return QueueResult(count, tracker.done, tracker.failed, submission.errors, seconds)


async def _wait_until_ended(
    tracker: Tracker, redis: Redis, submitting: asyncio.Task[None] | None = None
) -> None:
    """Poll until the submission (if still running) is over and no job is pending."""
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        # Read before polling: the submission may add its last ids while the poll awaits
        # Redis, and those must be polled once more before the run can end.
        submitted_all = submitting is None or submitting.done()
        await tracker.poll(redis)
        if submitted_all and not tracker.pending:
            break
        tracker.check_stalled()
    if submitting is not None:
        await submitting  # re-raise whatever stopped the submission


def _ended(status: bytes | None) -> bool:
    # A missing hash has expired or was never stored: it will not end any more either.
    return status in (None, JobStatus.DONE.encode(), JobStatus.FAILED.encode())
