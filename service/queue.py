"""The front's side of the queue: store a job and put it on the stream; read and cancel jobs.

The protocol (the job hash, the scripts and their arguments) is `renderq.queue_protocol`;
this module runs its calls on the front's async Redis client. `JobStore` is what the routes
use: every operation fails fast (`RENDERQ_REDIS_DEADLINE`, then a circuit breaker, see
`service.breaker`), and every durable write waits for a replica when there is one (see
`renderq.replication`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from renderq.errors import ErrorCode, InvalidRequest, QueueUnavailable, TooManyRequests
from renderq.job_tags import as_bytes, new_tag_key
from renderq.jobs import STATUS_FIELDS, Job
from renderq.keys import Keys
from renderq.metrics import CANCELLED, SUBMITTED, Increments
from renderq.queue_protocol import (
    Idempotency,
    QueueLimits,
    ScriptCall,
    cancel_call,
    depth_call,
    enqueue_call,
)
from renderq.replication import ReplicaAcks, raise_first_error
from renderq.settings import Settings
from renderq.tenants import DEFAULT_TENANT, is_tenant_name
from renderq.vocabulary import JobStatus
from service.breaker import RedisBreaker, RedisUnavailable

T = TypeVar("T")


async def run_script(redis: Redis, call: ScriptCall, acks: ReplicaAcks | None = None) -> Any:
    """Run `call` by the script's SHA1, sending its text only if Redis does not know it; a
    durable script also waits for a replica when `acks` is given."""
    durable = acks if call.script.durable else None
    # Decided once for the call, so the retry after NOSCRIPT asks what the first try would.
    ask = durable is not None and durable.ask_info()
    try:
        return await _run_script(redis, call, durable, ask)
    except NoScriptError:
        await redis.script_load(call.script.source)
        return await _run_script(redis, call, durable, ask)


async def _run_script(redis: Redis, call: ScriptCall, acks: ReplicaAcks | None, ask: bool) -> Any:
    """EVALSHA, then for a durable script (`acks`) WAIT and `INFO replication` as needed, in
    the same round trip."""
    script = call.script
    wait_for = acks.wait_for if acks is not None else 0
    if acks is None or not (wait_for or ask):  # a pipeline of one command costs more
        return await redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
        if wait_for:
            pipe.wait(wait_for, acks.timeout_ms)
        if ask:
            pipe.info("replication")
        # Errors are raised here, not by redis-py, whose message would quote the command
        # with its arguments: seconds of formatting for an upload (a NOSCRIPT after a flush).
        replies = await pipe.execute(raise_on_error=False)
    raise_first_error(replies)
    acked = replies[1] if wait_for else None
    info = replies[-1] if ask else None
    if info is None and acks.unconfirmed(acked):
        info = await redis.info("replication")
    return acks.settle(replies[0], acked, info)


async def enqueue_job(
    redis: Redis,
    keys: Keys,
    job: Job,
    limits: QueueLimits,
    upload: bytes | None = None,
    idempotency: Idempotency | None = None,
    acks: ReplicaAcks | None = None,
    *,
    tenant: str | None = None,
    tenant_max_queued: int = 0,
) -> Queued:
    """Queue `job` (counted as submitted) on its tenant's queue (`tenant`, when given,
    overrides `job.tenant`) and say where it stands, or name the job already queued under
    the same idempotency key. Past `limits.max_queued` jobs in all this raises
    QueueUnavailable; past `tenant_max_queued` of the tenant's own (0: no cap),
    TooManyRequests (`tenant_queue_full`)."""
    if tenant is not None and tenant != job.tenant:
        job = dataclasses.replace(job, tenant=tenant)
    if not is_tenant_name(job.tenant):  # it names Redis keys: the caller checks it first
        raise ValueError(f"not a tenant name: {job.tenant!r}")
    counted = Increments()
    counted.count(SUBMITTED, {"kind": str(job.kind), "engine": job.engine})
    fields, now = job.to_redis(), time.time()
    call = enqueue_call(keys, fields, limits, upload, idempotency, now, counted, tenant_max_queued)
    outcome, value, *seqs = await run_script(redis, call, acks)
    if outcome == b"full":
        raise QueueUnavailable(
            ErrorCode.QUEUE_FULL,
            f"more than {limits.max_queued} jobs are waiting; try again shortly",
        )
    if outcome == b"tenant_full":
        raise TooManyRequests(
            ErrorCode.TENANT_QUEUE_FULL,
            f"more than {tenant_max_queued} of this client's jobs are waiting; "
            "try again once some have started",
        )
    if outcome == b"existing":
        return Queued(_existing_job_id(value.decode(), idempotency))
    seq, started_seq, tenants = seqs
    return Queued(job.id, int(seq), int(started_seq), int(tenants))


@dataclass(frozen=True)
class Queued:
    """The job a POST queued (or found under its Idempotency-Key), with its number and the
    highest number started then, in its tenant's order, and how many tenants take turns
    (see `renderq.time_left`); the numbers are 0 for a job found."""

    job_id: str
    seq: int = 0
    started_seq: int = 0
    tenants: int = 1


def _existing_job_id(stored: str, idempotency: Idempotency | None) -> str:
    if idempotency is not None and not idempotency.same_request(stored):
        raise InvalidRequest(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for a different request",
            "Idempotency-Key",
        )
    return stored.partition(" ")[0]


async def cancel_job(
    redis: Redis, keys: Keys, job_id: str, limits: QueueLimits, acks: ReplicaAcks | None = None
) -> str | None:
    """Cancel a queued job; the status it had before (None when unknown or expired)."""
    counted = Increments()
    counted.count(CANCELLED)
    call = cancel_call(keys, job_id, limits, time.time(), counted)
    status = await run_script(redis, call, acks)
    return None if status is None else str(status.decode())


async def load_job(redis: Redis, keys: Keys, job_id: str) -> Job | None:
    """The job without its request (no route of the front needs it), or None when the id is
    unknown or the job has expired: one read of its hash."""
    return _job_from(await redis.hmget(keys.job(job_id), STATUS_FIELDS))


async def load_jobs(redis: Redis, keys: Keys, job_ids: Sequence[str]) -> list[Job | None]:
    """Several jobs as `load_job` reads one, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), STATUS_FIELDS)
        return [_job_from(values) for values in await pipe.execute()]


def _job_from(values: list[Any]) -> Job | None:
    """The job from its hash's `STATUS_FIELDS`; None when there is no hash (no id field)."""
    if values[0] is None:
        return None
    return Job.from_redis(dict(zip(STATUS_FIELDS, values, strict=True)))


@dataclass(frozen=True)
class StoredResult:
    """A job's image, and how long Redis keeps it: results never change, so a client may
    cache one for exactly that long."""

    image: bytes
    expires_in: int  # whole seconds


@dataclass(frozen=True)
class JobView:
    """A job as a poll sees it: None when unknown or expired, its result once done, the
    highest job number of its tenant started when it was read (how many are ahead, while it
    is queued), and how many tenants take turns (see `renderq.time_left`)."""

    job: Job | None
    result: StoredResult | None
    started_seq: int = 0
    tenants: int = 1


async def load_job_view(
    redis: Redis,
    keys: Keys,
    job_id: str,
    with_result: bool = True,
    tenant: str = DEFAULT_TENANT,
) -> JobView:
    """The job and, if there is one and `with_result`, its result, in one round trip: a poll
    of a done job needs both, and reading a result that does not exist yet costs Redis next
    to nothing. The job's place is read in `tenant`'s order, the one the caller expects
    the job to belong to; a queued job of another tenant costs a second round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.job(job_id), STATUS_FIELDS)
        pipe.get(keys.tenant_started_seq(tenant))
        pipe.zcard(keys.tenants)
        if with_result:
            pipe.get(keys.result(job_id))
            pipe.ttl(keys.result(job_id))
        values, started_seq, tenants, *stored = await pipe.execute()
    image, ttl = stored or (None, 0)
    result = None if image is None else StoredResult(as_bytes(image), max(0, int(ttl)))
    job = _job_from(values)
    if job is not None and job.tenant != tenant and job.status is JobStatus.QUEUED:
        started_seq = await redis.get(keys.tenant_started_seq(job.tenant))
    return JobView(job, result, int(started_seq or 0), max(1, int(tenants)))


@dataclass(frozen=True)
class QueueDepth:
    """What the queue holds over every tenant's stream: entries (waiting or running) and
    those running, in all and by tenant as (entries, running), and the entries each
    consumer (worker) holds."""

    entries: int
    running: int
    by_tenant: dict[str, tuple[int, int]]
    held: dict[str, int]

    @property
    def waiting(self) -> int:
        return max(0, self.entries - self.running)


async def load_queue_depth(redis: Redis, keys: Keys) -> QueueDepth:
    """Read the queue in one round trip (see `renderq.queue_protocol.DEPTH`)."""
    entries, running, by_tenant, held = await run_script(redis, depth_call(keys))
    return QueueDepth(
        int(entries),
        int(running),
        {
            as_bytes(by_tenant[i]).decode(): (int(by_tenant[i + 1]), int(by_tenant[i + 2]))
            for i in range(0, len(by_tenant), 3)
        },
        {as_bytes(held[i]).decode(): int(held[i + 1]) for i in range(0, len(held), 2)},
    )


async def load_job_tag_key(redis: Redis, keys: Keys) -> bytes:
    """The deployment's secret for job tags, created by whichever process asks first."""
    offered = new_tag_key()
    await redis.set(keys.job_tag_key, offered, nx=True)
    stored = await redis.get(keys.job_tag_key)
    return as_bytes(stored or offered)


async def live_worker_reports(redis: Redis, keys: Keys, ttl: float) -> list[dict[str, Any]]:
    """The reports of the workers that renewed their lease within `ttl` seconds."""
    found: Any = await redis.zrangebyscore(keys.workers, time.time() - ttl, "+inf")
    names = sorted(as_bytes(name).decode() for name in found)
    if not names:
        return []
    reports = await redis.mget([keys.worker(name) for name in names])
    return [json.loads(report) for report in reports if report is not None]


class JobStore:
    """The queue as the routes see it: each operation answers within the deadline or raises
    `RedisUnavailable`, and none touches Redis while the breaker is open."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.limits = QueueLimits.of(settings)
        self.acks = ReplicaAcks(settings.replica_ack_timeout_ms)
        self._deadline = settings.redis_deadline
        self._lease_ttl = settings.worker_lease_ttl
        self.breaker = RedisBreaker(
            self._ping, settings.breaker_failures, settings.breaker_probe_interval
        )

    async def enqueue(
        self,
        job: Job,
        upload: bytes | None,
        idempotency: Idempotency | None,
        *,
        tenant: str | None = None,
        tenant_max_queued: int = 0,
    ) -> Queued:
        queue = functools.partial(enqueue_job, tenant=tenant, tenant_max_queued=tenant_max_queued)
        return await self._guarded(
            queue, self.redis, self.keys, job, self.limits, upload, idempotency, self.acks
        )

    async def cancel(self, job_id: str) -> str | None:
        return await self._guarded(
            cancel_job, self.redis, self.keys, job_id, self.limits, self.acks
        )

    async def job(self, job_id: str) -> Job | None:
        return await self._guarded(load_job, self.redis, self.keys, job_id)

    async def job_view(
        self, job_id: str, with_result: bool = True, tenant: str = DEFAULT_TENANT
    ) -> JobView:
        return await self._guarded(
            load_job_view, self.redis, self.keys, job_id, with_result, tenant
        )

    async def job_tag_key(self) -> bytes:
        return await self._guarded(load_job_tag_key, self.redis, self.keys)

    async def worker_reports(self) -> list[dict[str, Any]]:
        """The live workers' reports; reading them is what proves that Redis answers."""
        return await self._guarded(live_worker_reports, self.redis, self.keys, self._lease_ttl)

    async def guarded(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run any other read or script (the dashboard's) under the same deadline and
        breaker: a Redis outage answers 503 there too."""
        return await self._guarded(operation, *args)

    async def learn_replicas(self) -> None:
        """Ask the primary for its replicas before the first durable write; if it cannot be
        asked now, the first write waits for a replica in case there is one."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self._deadline):
                self.acks.observe(await self.redis.info("replication"))

    async def close(self) -> None:
        await self.breaker.close()

    async def _ping(self) -> None:
        async with asyncio.timeout(self._deadline):
            await self.redis.ping()

    async def _guarded(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        self.breaker.check()
        try:
            async with asyncio.timeout(self._deadline):
                result = await operation(*args)
        except TimeoutError as exc:
            self.breaker.failed()
            raise RedisUnavailable(f"no answer within {self._deadline:g} s") from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self.breaker.failed()
            raise RedisUnavailable(type(exc).__name__) from exc
        self.breaker.succeeded()
        return result
