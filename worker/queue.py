"""The worker's side of the queue: take entries from the streams, record progress, end jobs.

Each tenant has its own stream (see `renderq.keys`), and workers take from the tenants in
turn (see `renderq.queue_protocol.TAKE`). Entries are read through a consumer group. An
entry stays pending until `end_job` acknowledges it in the same script that stores the
result, so a worker that dies before then leaves the entry for `claim_orphan` to hand to
another worker (see `worker.reclaim`).
The protocol (the job hash, the scripts and their arguments) is `renderq.queue_protocol`;
this module runs its calls on the worker's sync Redis client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError, ResponseError

from renderq.job_tags import as_bytes, new_tag_key
from renderq.jobs import Job
from renderq.keys import Keys
from renderq.metrics import Increments
from renderq.queue_protocol import (
    Delivery,
    Ending,
    QueueLimits,
    ScriptCall,
    claim_call,
    end_call,
    requeue_call,
    retire_call,
    start_call,
    take_call,
)
from renderq.replication import ReplicaAcks, raise_first_error
from renderq.tenants import DEFAULT_TENANT


def run_script(redis: Redis, call: ScriptCall, acks: ReplicaAcks | None = None) -> Any:
    """Run `call` by the script's SHA1, sending its text only if Redis does not know it; a
    durable script also waits for a replica when `acks` is given."""
    durable = acks if call.script.durable else None
    # Decided once for the call, so the retry after NOSCRIPT asks what the first try would.
    ask = durable is not None and durable.ask_info()
    try:
        return _run_script(redis, call, durable, ask)
    except NoScriptError:
        redis.script_load(call.script.source)
        return _run_script(redis, call, durable, ask)


def _run_script(redis: Redis, call: ScriptCall, acks: ReplicaAcks | None, ask: bool) -> Any:
    """EVALSHA, then for a durable script (`acks`) WAIT and `INFO replication` as needed, in
    the same round trip."""
    script = call.script
    wait_for = acks.wait_for if acks is not None else 0
    if acks is None or not (wait_for or ask):  # a pipeline of one command costs more
        return redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
    with redis.pipeline(transaction=False) as pipe:
        pipe.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
        if wait_for:
            pipe.wait(wait_for, acks.timeout_ms)
        if ask:
            pipe.info("replication")
        # Errors are raised here, not by redis-py, whose message would quote the command
        # with its arguments: seconds of formatting for an image (a NOSCRIPT after a flush).
        replies = pipe.execute(raise_on_error=False)
    raise_first_error(replies)
    acked = replies[1] if wait_for else None
    info = replies[-1] if ask else None
    if info is None and acks.unconfirmed(acked):
        info = redis.info("replication")
    return acks.settle(replies[0], acked, info)


def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the stream and its consumer group if missing; entries already queued are kept."""
    try:
        redis.xgroup_create(keys.stream, keys.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_next_job(
    redis: Redis, keys: Keys, consumer: str, block_ms: int, run: str = ""
) -> Delivery | None:
    """Block up to `block_ms` for a new entry of the default tenant's stream, whoever's
    turn it is; None when none came. (Workers take through `take_next_job`.)"""
    reply: Any = redis.xreadgroup(keys.group, consumer, {keys.stream: ">"}, count=1, block=block_ms)
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            return _delivery(entry_id, fields, consumer, run)
    return None


def tenants_with_entries(redis: Redis, keys: Keys) -> list[str]:
    """The tenants whose stream may hold entries: those taking turns, and the default
    tenant in any case (its stream is where a front of an earlier version queued)."""
    found: Any = redis.zrange(keys.tenants, 0, -1)
    tenants = [as_bytes(name).decode() for name in found]
    return tenants if DEFAULT_TENANT in tenants else [DEFAULT_TENANT, *tenants]


def pending_by_consumer(redis: Redis, keys: Keys, tenants: list[str]) -> dict[str, int]:
    """Every consumer of the group on the streams of `tenants`, and how many entries it
    holds unacknowledged on them in all."""
    with redis.pipeline(transaction=False) as pipe:
        for tenant in tenants:
            pipe.xinfo_consumers(keys.tenant_stream(tenant), keys.group)
        replies: list[Any] = pipe.execute(raise_on_error=False)
    pending: dict[str, int] = {}
    for tenant, consumers in zip(tenants, replies, strict=True):
        if isinstance(consumers, ResponseError):
            # A tenant's stream emptied and deleted since: nothing pending there. The default
            # stream or its group, deleted by hand, is made again at once: an idle worker
            # waits on the wake stream, so no blocked read of its own fails to tell it.
            if tenant == DEFAULT_TENANT:
                ensure_group(redis, keys)
            continue
        for c in consumers:
            name = as_bytes(c["name"]).decode()
            pending[name] = pending.get(name, 0) + int(c["pending"])
    return pending


def claim_orphan(
    redis: Redis,
    keys: Keys,
    consumer: str,
    candidates: list[str],
    tenants: list[str],
    run: str = "",
) -> Delivery | None:
    """Take one entry held by `candidates` on the streams of `tenants`: this worker's own,
    or dead workers' (see `renderq.queue_protocol.CLAIM`); None when there was none."""
    reply = run_script(redis, claim_call(keys, consumer, candidates, tenants))
    if not reply:
        return None
    which, (entry_id, flat) = reply
    return _delivery(entry_id, _pairs(flat), consumer, run, tenants[int(which) - 1])


def retire_consumer(redis: Redis, keys: Keys, consumer: str) -> None:
    """Drop this worker's lease and leave the group of every stream where it holds no
    entry."""
    run_script(redis, retire_call(keys, consumer, tenants_with_entries(redis, keys)))


@dataclass(frozen=True)
class Taken:
    """A new entry taken and its job started in one call; `job` is None when it expired."""

    delivery: Delivery
    job: Job | None


@dataclass(frozen=True)
class Idle:
    """A take that found nothing new: where the streams an idle worker waits on ended then,
    so that its wait (`wait_for_work`) misses no job queued since."""

    wake_last: str
    stream_last: str


def take_next_job(
    redis: Redis, keys: Keys, limits: QueueLimits, consumer: str, run: str = ""
) -> Taken | Idle:
    """Take the next new entry of the tenant whose turn it is and start its job, without
    blocking (see `renderq.queue_protocol.TAKE`)."""
    reply = run_script(redis, take_call(keys, consumer, run, limits, time.time()))
    tenant, *rest = reply
    if tenant is None:
        wake_last, stream_last = (as_bytes(entry).decode() for entry in rest)
        return Idle(wake_last, stream_last)
    entry_id, fields, job = rest
    delivery = _delivery(entry_id, _pairs(fields), consumer, run, as_bytes(tenant).decode())
    return Taken(delivery, _job_from(job))


def wait_for_work(redis: Redis, keys: Keys, idle: Idle, block_ms: int) -> bool:
    """Block up to `block_ms` until a job is queued after `idle` was seen; whether one was.

    Every job queued adds an entry to the wake stream, so one wait covers every tenant; the
    default stream is watched too, for fronts of an earlier version. Every idle worker
    wakes, and those that find nothing to take wait again: a few extra reads, only when
    workers are idle."""
    watched: dict[Any, Any] = {keys.wake: idle.wake_last, keys.stream: idle.stream_last}
    return bool(redis.xread(watched, count=1, block=block_ms))


def start_job(redis: Redis, keys: Keys, limits: QueueLimits, delivery: Delivery) -> Job | None:
    """Mark the job running and count the attempt; None when it expired or was removed.

    A job that is not `running` afterwards was cancelled or has ended: the caller drops it.
    """
    return _job_from(run_script(redis, start_call(keys, delivery, limits, time.time())))


def _job_from(flat: list[Any] | None) -> Job | None:
    """The job from its hash as a flat list of fields and values; None for no hash."""
    if not flat:
        return None
    return Job.from_redis(_pairs(flat))


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """A script's flat answer `[field, value, field, value, ...]` as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def load_input(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    """The uploaded image of an image job; None once it has expired."""
    data = redis.get(keys.input(job_id))
    return data.encode() if isinstance(data, str) else data


def end_job(
    redis: Redis,
    keys: Keys,
    delivery: Delivery,
    ending: Ending,
    limits: QueueLimits,
    acks: ReplicaAcks | None = None,
    counted: Increments | None = None,
) -> bool:
    """Store how the job ended (the image and done, or the failure; a dead-lettered one is
    listed for an operator, see `worker.dead_letters`), acknowledge, and announce it, all at
    once, with its counts (`counted`) and its event. False when another worker had already
    ended the job: nothing was stored or counted."""
    call = end_call(keys, delivery, ending, limits, time.time(), counted)
    return bool(run_script(redis, call, acks))


def requeue_job(
    redis: Redis,
    keys: Keys,
    entry_id: str,
    job_id: str,
    limits: QueueLimits,
    acks: ReplicaAcks | None = None,
) -> bool:
    """Put a dead-lettered job back on the stream; False if it expired or is no longer dead."""
    call = requeue_call(keys, entry_id, job_id, limits, time.time())
    return bool(run_script(redis, call, acks))


def drop_delivery(redis: Redis, keys: Keys, delivery: Delivery) -> None:
    """Acknowledge and delete an entry whose job expired, was cancelled or has ended."""
    stream = keys.tenant_stream(delivery.tenant)
    with redis.pipeline(transaction=True) as pipe:
        pipe.xack(stream, keys.group, delivery.entry_id)
        pipe.xdel(stream, delivery.entry_id)
        pipe.execute()


def load_job_tag_key(redis: Redis, keys: Keys) -> bytes:
    """The deployment's secret for job tags, created by whichever process asks first."""
    offered = new_tag_key()
    redis.set(keys.job_tag_key, offered, nx=True)
    stored = redis.get(keys.job_tag_key)
    return as_bytes(stored or offered)


def renew_lease(redis: Redis, keys: Keys, consumer: str, report: str, ttl: float) -> None:
    """Store this worker's lease (its report, for `/healthz`) for `ttl` more seconds.

    The index of workers forgets those silent for longer than `ttl`, so it stays small.
    """
    now = time.time()
    with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.worker(consumer), report, px=int(ttl * 1000))
        pipe.zadd(keys.workers, {consumer: now})
        pipe.zremrangebyscore(keys.workers, "-inf", now - ttl)
        pipe.execute()


def _delivery(
    entry_id: bytes | str,
    fields: dict[bytes, bytes],
    consumer: str,
    run: str,
    tenant: str = DEFAULT_TENANT,
) -> Delivery:
    entry, job_id = as_bytes(entry_id).decode(), as_bytes(fields[b"id"]).decode()
    return Delivery(entry, job_id, consumer, run, tenant)
