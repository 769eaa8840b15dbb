"""Every Redis key and channel renderq uses, in one place."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, so several renderq deployments can share a Redis."""

    prefix: str = "renderq"

    @property
    def stream(self) -> str:
        """The job stream: one entry per job to run, holding only the job id."""
        return f"{self.prefix}:stream"

    @property
    def group(self) -> str:
        """The consumer group all workers read the stream through."""
        return f"{self.prefix}:workers"

    @property
    def dead_letters(self) -> str:
        """Stream of jobs that failed with `too_many_attempts`, for an operator to requeue."""
        return f"{self.prefix}:dead"

    @property
    def finished_channel(self) -> str:
        """Pub/sub channel on which a worker announces the id of every job that ended."""
        return f"{self.prefix}:finished"

    @property
    def job_tag_key(self) -> str:
        """The secret that turns job ids into the tags logs carry (see `renderq.job_tags`)."""
        return f"{self.prefix}:job_tag_key"

    def worker(self, consumer: str) -> str:
        """A live worker's lease, holding its report (its sandbox's layers): it expires
        within `RENDERQ_WORKER_LEASE_TTL` of the worker's death (see `worker.lease`)."""
        return f"{self.prefix}:worker:{consumer}"

    @property
    def workers(self) -> str:
        """Sorted set of the workers holding a lease, scored by when they last renewed it."""
        return f"{self.prefix}:workers"

    def job(self, job_id: str) -> str:
        """Hash holding a job's request and status document."""
        return f"{self.prefix}:job:{job_id}"

    def input(self, job_id: str) -> str:
        """The uploaded image of an image job, kept until the job ends or expires."""
        return f"{self.prefix}:input:{job_id}"

    def idempotency(self, client_key: str) -> str:
        """The job id queued under a client's Idempotency-Key (hashed: any length, any bytes)."""
        return f"{self.prefix}:idempotency:{hashlib.sha256(client_key.encode()).hexdigest()}"

    def result(self, job_id: str) -> str:
        """The rendered image bytes."""
        return f"{self.prefix}:result:{job_id}"


def oldest_live_entry_id(ttl: int) -> str:
    """Stream entry id older than any job that can still exist: the safe point to trim to.

    Entry ids start with their creation time in ms, and a job's hash expires `ttl` seconds
    after it was queued, so every entry before this id points at nothing.
    """
    return f"{int((time.time() - ttl) * 1000)}-0"
