"""The worker's side of the queue: take entries from the stream, record progress, end jobs.

Entries are read through a consumer group. An entry stays pending until `finish_job`
acknowledges it in the same script that stores the result, so a worker that dies before
then leaves the entry for `claim_stale_jobs` to hand to another worker. The protocol (the
job hash, the scripts and their arguments) is `renderq.queue_protocol`; this module runs
its calls on the worker's sync Redis client.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError, ResponseError

from renderq.job_tags import as_bytes, new_tag_key
from renderq.jobs import Job
from renderq.keys import Keys
from renderq.queue_protocol import (
    Delivery,
    Ending,
    ScriptCall,
    end_call,
    requeue_call,
    start_call,
)


def run_script(redis: Redis, call: ScriptCall) -> Any:
    """Run `call` by the script's SHA1, sending its text only if Redis does not know it."""
    script = call.script
    try:
        return redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        redis.script_load(script.source)
        return redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)


def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the stream and its consumer group if missing; entries already queued are kept."""
    try:
        redis.xgroup_create(keys.stream, keys.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_next_job(redis: Redis, keys: Keys, consumer: str, block_ms: int) -> Delivery | None:
    """Block up to `block_ms` for a new entry; None when none came."""
    reply: Any = redis.xreadgroup(keys.group, consumer, {keys.stream: ">"}, count=1, block=block_ms)
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            return _delivery(entry_id, fields, consumer)
    return None


def claim_stale_jobs(
    redis: Redis, keys: Keys, consumer: str, idle_ms: int, count: int = 1
) -> list[Delivery]:
    """Take over entries another worker took more than `idle_ms` ago and never acknowledged."""
    reply: Any = redis.xautoclaim(
        keys.stream, keys.group, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
    )
    return [_delivery(entry_id, fields, consumer) for entry_id, fields in reply[1] if fields]


def start_job(redis: Redis, keys: Keys, delivery: Delivery) -> Job | None:
    """Mark the job running and count the attempt; None when it expired or was removed.

    A job that is not `running` afterwards was cancelled or has ended: the caller drops it.
    """
    flat = run_script(redis, start_call(keys, delivery, time.time()))
    if not flat:
        return None
    return Job.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))


def load_input(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    """The uploaded image of an image job; None once it has expired."""
    data = redis.get(keys.input(job_id))
    return data.encode() if isinstance(data, str) else data


def end_job(redis: Redis, keys: Keys, delivery: Delivery, ending: Ending, ttl: int) -> bool:
    """Store how the job ended (the image and done, or the failure; a dead-lettered one is
    listed for an operator, see `worker.dead_letters`), acknowledge, and announce it, all at
    once. False when another worker had already ended the job: nothing was stored."""
    return bool(run_script(redis, end_call(keys, delivery, ending, ttl, time.time())))


def requeue_job(redis: Redis, keys: Keys, entry_id: str, job_id: str, ttl: int) -> bool:
    """Put a dead-lettered job back on the stream; False if it expired or is no longer dead."""
    return bool(run_script(redis, requeue_call(keys, entry_id, job_id, ttl, time.time())))


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


def publish_worker_report(redis: Redis, keys: Keys, consumer: str, report: str, ttl: int) -> None:
    """Store this worker's report under a TTL it renews; `/healthz` lists the live ones.

    The index of reports forgets workers silent for longer than `ttl`, so it stays small.
    """
    now = time.time()
    with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.worker(consumer), report, ex=ttl)
        pipe.zadd(keys.workers, {consumer: now})
        pipe.zremrangebyscore(keys.workers, "-inf", now - ttl)
        pipe.execute()


def _delivery(entry_id: bytes | str, fields: dict[bytes, bytes], consumer: str) -> Delivery:
    entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Delivery(entry, fields[b"id"].decode(), consumer)
