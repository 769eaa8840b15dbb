"""`python -m bench.fair_share`: how long a small tenant waits behind a big one's backlog.

Tenant A queues a backlog (500 jobs by default), two workers start on it, and once they are
into it tenant B queues a few (5). Printed: when B's jobs ended, counted in A's jobs that
ended in the meantime (round robin: about one of A's per one of B's), and in seconds, beside
what first in, first out would have made B wait (every one of A's jobs still waiting). The
jobs are small text renders, queued by the queue's own code (`service.queue.enqueue_job`)
under each tenant, as a front does for an API key's requests.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bench.cluster import running_cluster
from renderq.jobs import Job, new_job_id
from renderq.keys import Keys
from renderq.queue_protocol import JobField, QueueLimits
from renderq.settings import Settings
from renderq.text_request import parse_text_request
from renderq.vocabulary import JobKind
from service.queue import enqueue_job
from tests.processes import wait_until

KEYS = Keys()
LIMITS = QueueLimits(ttl=3600, max_queued=100_000)
WORKERS = 2


def tenant_jobs(tenant: str, count: int) -> list[Job]:
    """`count` small text jobs of `tenant`, as the front makes them."""
    settings = Settings()
    return [
        Job(
            new_job_id(),
            JobKind.TEXT,
            "pillow",
            "png",
            parse_text_request({"text": f"{tenant} {n}", "size": 12}, settings).to_json(),
            tenant=tenant,
        )
        for n in range(count)
    ]


async def _queue(redis_url: str, jobs: Sequence[Job]) -> None:
    async with AsyncRedis.from_url(redis_url) as client:
        for job in jobs:
            await enqueue_job(client, KEYS, dataclasses.replace(job, queued_at=time.time()), LIMITS)


def queue_jobs(redis_url: str, jobs: Sequence[Job]) -> None:
    """Queue `jobs` in order, one enqueue each, as fronts do."""
    asyncio.run(_queue(redis_url, jobs))


def ended_at(redis: Redis, jobs: Sequence[Job]) -> list[float | None]:
    """When each job ended (None: not yet), read from its hash."""
    with redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hget(KEYS.job(job.id), JobField.FINISHED_AT)
        return [None if value is None else float(value) for value in pipe.execute()]


@dataclass(frozen=True)
class Fairness:
    """When the small tenant's jobs ended, against the big tenant's backlog."""

    backlog_waiting: int  # the big tenant's jobs not yet ended when the small one queued
    big_meanwhile: int  # the big tenant's jobs that ended while the small one's waited
    small_jobs: int
    worst_wait: int  # the most of the big tenant's jobs that ended while one small job waited
    small_seconds: float  # from the small tenant's first queued to its last ended
    big_per_second: float  # the big tenant's rate before the small one came

    @property
    def fifo_seconds(self) -> float:
        """What first in, first out would have made the small tenant wait."""
        return (self.backlog_waiting + self.small_jobs) / self.big_per_second


def measure_fairness(
    redis: Redis,
    redis_url: str,
    big: Sequence[Job],
    small: Sequence[Job],
    start_workers: Callable[[], object],
) -> Fairness:
    """Queue `big`, then start the workers (`start_workers`, which need not wait for them),
    wait until they are into the backlog, queue `small` and wait until it has ended."""
    queue_jobs(redis_url, big)
    start_workers()
    wait_until(lambda: sum(end is not None for end in ended_at(redis, big)) >= 10, 120, "A busy")
    warm = [end for end in ended_at(redis, big) if end is not None]
    rate = (len(warm) - 1) / max(1e-3, max(warm) - min(warm))
    waiting = sum(end is None for end in ended_at(redis, big))
    queue_jobs(redis_url, small)
    wait_until(lambda: all(ended_at(redis, small)), 300, "B's jobs to end")
    with redis.pipeline(transaction=False) as pipe:
        for job in small:
            pipe.hget(KEYS.job(job.id), JobField.QUEUED_AT)
        small_queued = [float(value or 0) for value in pipe.execute()]
    small_ended = [end or 0.0 for end in ended_at(redis, small)]
    big_ended = [end for end in ended_at(redis, big) if end is not None]

    def big_between(start: float, end: float) -> int:
        return sum(start < big_end <= end for big_end in big_ended)

    waits = map(big_between, small_queued, small_ended)
    first, last = min(small_queued), max(small_ended)
    return Fairness(waiting, big_between(first, last), len(small), max(waits), last - first, rate)


def format_fairness(figure: Fairness) -> str:
    return "\n".join(
        [
            f"tenant A: {figure.backlog_waiting} jobs waiting when tenant B queued "
            f"{figure.small_jobs} ({WORKERS} workers, {figure.big_per_second:.0f} jobs/s)",
            f"tenant B's {figure.small_jobs} jobs ended after {figure.big_meanwhile} of A's "
            f"ended in the meantime, {figure.small_seconds:.2f} s after B queued the first; "
            f"each of B's waited for at most {figure.worst_wait} of A's",
            f"first in, first out would have made B wait for all {figure.backlog_waiting}: "
            f"about {figure.fifo_seconds:.1f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fair_share", description=__doc__)
    parser.add_argument("--backlog", type=int, default=500, help="tenant A's jobs")
    parser.add_argument("--small", type=int, default=5, help="tenant B's jobs")
    args = parser.parse_args(argv)
    with running_cluster() as cluster, Redis.from_url(cluster.redis_url) as redis:
        figure = measure_fairness(
            redis,
            cluster.redis_url,
            tenant_jobs("tenant-a", args.backlog),
            tenant_jobs("tenant-b", args.small),
            lambda: [cluster.start_worker() for _ in range(WORKERS)],
        )
    print(format_fairness(figure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
