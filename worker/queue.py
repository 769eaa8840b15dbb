"""The worker's side of the queue: take entries from the stream, record progress, end jobs.

Entries are read through a consumer group. An entry stays pending until `end_job`
acknowledges it in the same script that stores the result, so a worker that dies before
then leaves the entry for `claim_orphan` to hand to another worker (see `worker.reclaim`).
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
from renderq.replication import ReplicaAcks


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
        replies = pipe.execute()
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
    """Block up to `block_ms` for a new entry; None when none came."""
    reply: Any = redis.xreadgroup(keys.group, consumer, {keys.stream: ">"}, count=1, block=block_ms)
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            return _delivery(entry_id, fields, consumer, run)
    return None


def pending_by_consumer(redis: Redis, keys: Keys) -> dict[str, int]:
    """Every consumer of the group and how many entries it holds unacknowledged."""
    consumers: Any = redis.xinfo_consumers(keys.stream, keys.group)
    return {as_bytes(c["name"]).decode(): int(c["pending"]) for c in consumers}


def claim_orphan(
    redis: Redis, keys: Keys, consumer: str, candidates: list[str], run: str = ""
) -> Delivery | None:
    """Take one entry held by `candidates`: this worker's own, or dead workers' (see
    `renderq.queue_protocol.CLAIM`); None when there was none."""
    reply = run_script(redis, claim_call(keys, consumer, candidates))
    if not reply:
        return None
    entry_id, flat = reply
    return _delivery(entry_id, _pairs(flat), consumer, run)


def retire_consumer(redis: Redis, keys: Keys, consumer: str) -> None:
    """Drop this worker's lease and leave the group, unless it still holds an entry."""
    run_script(redis, retire_call(keys, consumer))


@dataclass(frozen=True)
class Taken:
    """A new entry taken and its job started in one call; `job` is None when it expired."""

    delivery: Delivery
    job: Job | None


def take_next_job(
    redis: Redis, keys: Keys, limits: QueueLimits, consumer: str, run: str = ""
) -> Taken | None:
    """Take the next new entry and start its job, without blocking; None when the stream
    has nothing new (see `renderq.queue_protocol.TAKE`)."""
    reply = run_script(redis, take_call(keys, consumer, run, limits, time.time()))
    if not reply:
        return None
    entry_id, fields, job = reply
    return Taken(_delivery(entry_id, _pairs(fields), consumer, run), _job_from(job))


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
    with redis.pipeline(transaction=True) as pipe:
        pipe.xack(keys.stream, keys.group, delivery.entry_id)
        pipe.xdel(keys.stream, delivery.entry_id)
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
    entry_id: bytes | str, fields: dict[bytes, bytes], consumer: str, run: str
) -> Delivery:
    return Delivery(as_bytes(entry_id).decode(), as_bytes(fields[b"id"]).decode(), consumer, run)
