"""The worker's side of the queue: take entries from the stream, record progress, finish jobs.

Entries are read through a consumer group. An entry stays pending until `finish_job`
acknowledges it in the same transaction that stores the result, so a worker that dies before
then leaves the entry for `claim_stale_jobs` to hand to another worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from renderq.jobs import Job, JobStatus
from renderq.keys import Keys


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this worker: the entry id to acknowledge and the job id."""

    entry_id: str
    job_id: str


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
            return _delivery(entry_id, fields)
    return None


def claim_stale_jobs(
    redis: Redis, keys: Keys, consumer: str, idle_ms: int, count: int = 1
) -> list[Delivery]:
    """Take over entries another worker took more than `idle_ms` ago and never acknowledged."""
    reply: Any = redis.xautoclaim(
        keys.stream, keys.group, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
    )
    return [_delivery(entry_id, fields) for entry_id, fields in reply[1] if fields]


# Mark a job running only if its hash still exists: an HSET on an expired job would recreate
# a partial hash with no TTL.
_START_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'started_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return redis.call('HGETALL', KEYS[1])
"""


def start_job(redis: Redis, keys: Keys, job_id: str) -> Job | None:
    """Mark the job running and count the attempt; None when it expired or was removed."""
    flat = redis.eval(_START_JOB, 1, keys.job(job_id), str(JobStatus.RUNNING), str(time.time()))
    if not flat:
        return None
    return Job.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))


def load_input(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    """The uploaded image of an image job; None once it has expired."""
    data = redis.get(keys.input(job_id))
    return data.encode() if isinstance(data, str) else data


def finish_job(redis: Redis, keys: Keys, delivery: Delivery, image: bytes, ttl: int) -> None:
    """Store the image and the done status, acknowledge, and announce it, all at once."""
    _end(redis, keys, delivery, ttl, {"status": str(JobStatus.DONE)}, image)


def fail_job(
    redis: Redis, keys: Keys, delivery: Delivery, code: str, message: str, ttl: int
) -> None:
    fields = {"status": str(JobStatus.FAILED), "error_code": code, "error_message": message}
    _end(redis, keys, delivery, ttl, fields, None)


def drop_delivery(redis: Redis, keys: Keys, delivery: Delivery) -> None:
    """Acknowledge and delete an entry whose job no longer exists."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.xack(keys.stream, keys.group, delivery.entry_id)
        pipe.xdel(keys.stream, delivery.entry_id)
        pipe.execute()


def _end(
    redis: Redis,
    keys: Keys,
    delivery: Delivery,
    ttl: int,
    fields: dict[Any, str],
    image: bytes | None,
) -> None:
    job_key = keys.job(delivery.job_id)
    with redis.pipeline(transaction=True) as pipe:
        if image is not None:
            pipe.set(keys.result(delivery.job_id), image, ex=ttl)
        pipe.hset(job_key, mapping={**fields, "finished_at": str(time.time())})
        pipe.expire(job_key, ttl)
        pipe.delete(keys.input(delivery.job_id))  # the upload is not needed once the job ends
        pipe.xack(keys.stream, keys.group, delivery.entry_id)
        pipe.xdel(keys.stream, delivery.entry_id)
        pipe.publish(keys.finished_channel, delivery.job_id)
        pipe.execute()


def _delivery(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Delivery:
    entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Delivery(entry, fields[b"id"].decode())
