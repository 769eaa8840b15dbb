"""Every Redis key and channel renderq uses, in one place."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from renderq.tenants import DEFAULT_TENANT


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, so several renderq deployments can share a Redis."""

    prefix: str = "renderq"

    @property
    def stream(self) -> str:
        """The default tenant's job stream: one entry per job to run, holding only the job id.
        Every other tenant's is `tenant_stream`."""
        return f"{self.prefix}:stream"

    def tenant_stream(self, tenant: str) -> str:
        """A tenant's own job stream, read through the same group (see `tenants`)."""
        return _of_tenant(self.stream, tenant)

    @property
    def tenants(self) -> str:
        """Sorted set of the tenants whose stream holds entries, scored by when a worker last
        served them (0: not yet): workers take from the lowest first, so tenants take turns."""
        return f"{self.prefix}:tenants"

    @property
    def wake(self) -> str:
        """Capped stream with an entry per job queued, whatever its tenant: what an idle
        worker waits on (it cannot block on every tenant's stream)."""
        return f"{self.prefix}:wake"

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

    # API keys and their limits (KEYS, issue 14; see `renderq.api_keys`).
    @property
    def api_keys(self) -> str:
        """Hash of every API key, by its tenant's name: a salted hash and the key's limits."""
        return f"{self.prefix}:api_keys"

    def rate_bucket(self, tenant: str) -> str:
        """A tenant's token bucket for submissions (see `renderq.rate_limit`)."""
        return f"{self.prefix}:rate:{tenant}"

    def idempotency(self, client_key: str) -> str:
        """The job id queued under a client's Idempotency-Key (hashed: any length, any bytes)."""
        return f"{self.prefix}:idempotency:{hashlib.sha256(client_key.encode()).hexdigest()}"

    def result(self, job_id: str) -> str:
        """The rendered image bytes."""
        return f"{self.prefix}:result:{job_id}"

    @property
    def metrics(self) -> str:
        """Hash of every counter and histogram bucket, whichever process counted it (see
        `renderq.metrics`): any front serves the whole deployment's totals."""
        return f"{self.prefix}:metrics"

    @property
    def events(self) -> str:
        """Capped stream of every job's life, one entry per change (see `renderq.job_events`)."""
        return f"{self.prefix}:events"

    def ended_in_second(self, second: int) -> str:
        """How many jobs ended in that Unix second: the recent rate, for time left and the
        dashboard's chart. Each expires after `SERIES_SECONDS`."""
        return f"{self.prefix}:ended:{second}"

    def depth_in_second(self, second: int) -> str:
        """The stream's length a front saw in that Unix second; expires as above."""
        return f"{self.prefix}:depth:{second}"

    @property
    def queued_seq(self) -> str:
        """Counter of the default tenant's jobs put on its stream; each job's hash keeps its
        number (`seq`). Other tenants count on `tenant_queued_seq`."""
        return f"{self.prefix}:queued_seq"

    @property
    def started_seq(self) -> str:
        """The highest `seq` of the default tenant a worker has started: the jobs between it
        and a job's own `seq` are the ones ahead of it in its tenant's queue."""
        return f"{self.prefix}:started_seq"

    def tenant_queued_seq(self, tenant: str) -> str:
        """A tenant's `queued_seq`; with its `tenant_started_seq`, deleted with its stream
        once it has no work left, so its numbering starts again."""
        return _of_tenant(self.queued_seq, tenant)

    def tenant_started_seq(self, tenant: str) -> str:
        return _of_tenant(self.started_seq, tenant)

    @property
    def taps(self) -> str:
        """Set of the live taps' names: each gets a copy of every new job (see `worker.tap`)."""
        return f"{self.prefix}:taps"

    def tap_stream(self, name: str) -> str:
        """A tap's own capped copy of the job stream."""
        return f"{self.prefix}:tap:{name}:stream"

    @property
    def tap_group(self) -> str:
        """The consumer group a tap's processes read its own stream through."""
        return f"{self.prefix}:tap"

    def tap_result(self, name: str, job_id: str) -> str:
        """What a tap rendered for a job, kept apart from production's result."""
        return f"{self.prefix}:tap:{name}:result:{job_id}"

    def tap_comparisons(self, name: str) -> str:
        """Capped stream of a tap's comparisons with production, one entry per job."""
        return f"{self.prefix}:tap:{name}:comparisons"


def _of_tenant(key: str, tenant: str) -> str:
    """A tenant's own key of a kind. The default tenant's is the kind's key itself, so a
    deployment that ran before tenants existed keeps its queue; the scripts build the same
    names (`of_tenant` in `renderq.queue_protocol`)."""
    return key if tenant == DEFAULT_TENANT else f"{key}:{tenant}"


# How long the per-second series (`ended_in_second`, `depth_in_second`) are kept.
SERIES_SECONDS = 900


def oldest_live_entry_id(ttl: int) -> str:
    """Stream entry id older than any job that can still exist: the safe point to trim to.

    Entry ids start with their creation time in ms, and a job's hash expires `ttl` seconds
    after it was queued, so every entry before this id points at nothing.
    """
    return f"{int((time.time() - ttl) * 1000)}-0"
