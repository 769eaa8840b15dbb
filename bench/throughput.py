"""Throughput through the queue, timed two ways.

`measure_queue` is end to end: from the first POST until every job has ended, so the front and
the HTTP client share the CPUs with the workers. `measure_drain` queues every job first while
the caller keeps the workers stopped, then times only the workers emptying the queue.

Progress is read from the stream, whose entry for a job leaves it when the job ends: one
XLEN every `POLL_INTERVAL`, whatever the number of jobs in flight, so watching costs neither
the front nor the CPUs the workers need. How each job ended is read once, after the clock.
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
    """Watches the stream while jobs run, then counts how the submitted jobs ended."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.keys = Keys()
        self.left = -1
        self.done = 0
        self.failed = 0
        self.last_progress = time.monotonic()

    async def poll(self, redis: Redis) -> int:
        """Entries still in the stream: jobs queued or running."""
        left = int(await redis.xlen(self.keys.stream))
        if left != self.left:
            self.left, self.last_progress = left, time.monotonic()
        return left

    def check_stalled(self) -> None:
        if time.monotonic() - self.last_progress > STALL_TIMEOUT:
            raise RuntimeError(f"no job ended for {STALL_TIMEOUT:.0f} s; {self.left} left")

    async def count(self, redis: Redis) -> None:
        """How every submitted job ended, in one round trip."""
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in self.submission.job_ids:
                pipe.hget(self.keys.job(job_id), "status")
            statuses: list[bytes | None] = await pipe.execute()
        self.done = statuses.count(JobStatus.DONE.encode())
        # A job not done failed, or its hash is gone: either way it counts against the run.
        self.failed = len(statuses) - self.done


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
        await tracker.count(redis)
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
        await tracker.count(redis)
    return QueueResult(count, tracker.done, tracker.failed, submission.errors, seconds)


async def _wait_until_ended(
    tracker: Tracker, redis: Redis, submitting: asyncio.Task[None] | None = None
) -> None:
    """Poll until the submission (if still running) is over and the stream is empty."""
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        # Read before polling: a job queued while the poll awaits Redis must be seen by a
        # later poll before the run can end.
        submitted_all = submitting is None or submitting.done()
        if await tracker.poll(redis) == 0 and submitted_all:
            break
        tracker.check_stalled()
    if submitting is not None:
        await submitting  # re-raise whatever stopped the submission
