"""What watching costs: the queue's scripts for one job (queue, take, end) with the metrics
and the job events recorded, and with neither, against the benchmark's Redis.

The difference per job is what recording adds to the work around a render; the bench shows
it beside a drained text job's whole cost to the workers (its share, the issue's "under 3%").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from renderq.jobs import Job, new_job_id
from renderq.keys import Keys
from renderq.metrics import SUBMITTED, Increments
from renderq.queue_protocol import Ending, QueueLimits, enqueue_call
from renderq.vocabulary import JobKind
from worker.job_metrics import counts_for_end
from worker.queue import Taken, end_job, ensure_group, run_script, take_next_job

IMAGE = b"\x89PNG" + bytes(2000)  # about a rendered text job's size
# Keys of their own: the cluster's workers, still running, never see these jobs.
PREFIX = "renderq-recording-bench"


@dataclass(frozen=True)
class RecordingCost:
    """CPU time per job, not wall time: on a shared machine the wall clock of 2000 jobs moves
    more between runs than recording costs. Redis's is its own account of the scripts' time
    (INFO commandstats), the client's is this process's CPU time."""

    jobs: int
    redis_us_on: float
    redis_us_off: float
    client_us_on: float
    client_us_off: float

    @property
    def extra_us_per_job(self) -> float:
        return self.redis_us_on - self.redis_us_off + self.client_us_on - self.client_us_off


def measure_recording_cost(redis_url: str, jobs: int, rounds: int = 7) -> RecordingCost:
    """The least of `rounds` for each way, alternated, so drift in the machine hits both."""
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    with Redis.from_url(redis_url) as redis:
        for _ in range(rounds):
            on.append(_cpu_per_job(redis, jobs, recording=True))
            off.append(_cpu_per_job(redis, jobs, recording=False))
    return RecordingCost(
        jobs,
        min(r for r, _ in on),
        min(r for r, _ in off),
        min(c for _, c in on),
        min(c for _, c in off),
    )


def _cpu_per_job(redis: Redis, jobs: int, recording: bool) -> tuple[float, float]:
    """(Redis's microseconds in the scripts, this process's CPU microseconds) per job."""
    _clear(redis)
    redis.config_resetstat()
    started = time.process_time()
    _run_jobs(redis, jobs, recording)
    client = time.process_time() - started
    stats: Any = redis.info("commandstats")
    scripts = stats.get("cmdstat_evalsha", {}).get("usec", 0)
    return scripts / jobs, client / jobs * 1e6


def _clear(redis: Redis) -> None:
    for key in redis.scan_iter(f"{PREFIX}:*"):
        redis.delete(key)


def _run_jobs(redis: Redis, jobs: int, recording: bool) -> None:
    keys = Keys(PREFIX)
    limits = QueueLimits(ttl=600, max_queued=jobs + 1, events_max=10000 if recording else 0)
    ensure_group(redis, keys)
    for _ in range(jobs):
        job = Job(new_job_id(), JobKind.TEXT, "pillow", "png", {"text": "x"}, queued_at=time.time())
        counted = Increments()
        counted.count(SUBMITTED, {"kind": "text", "engine": "pillow"})
        fields = job.to_redis()
        call = enqueue_call(
            keys, fields, limits, None, None, time.time(), counted if recording else None
        )
        run_script(redis, call)
        taken = take_next_job(redis, keys, limits, "bench", "run")
        assert isinstance(taken, Taken) and taken.job is not None
        ending = Ending.done(IMAGE, render_ms=1.0)
        ended = counts_for_end(taken.job, ending, True, 0) if recording else None
        end_job(redis, keys, taken.delivery, ending, limits, None, ended)
