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

from renderq.job_tags import as_bytes, new_tag_key
from renderq.jobs import Job, JobStatus
from renderq.keys import Keys, oldest_live_entry_id


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to one consumer: the entry id to acknowledge and the job id."""

    entry_id: str
    job_id: str
    consumer: str

    @property
    def token(self) -> str:
        """Names this delivery in the job hash, so a script retried after a lost reply (Redis
        restarted between running it and answering) recognises its own earlier write."""
        return f"{self.consumer} {self.entry_id}"


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


# Mark a job running only while it is queued or running (a redelivery): a cancelled or ended
# job stays as it is, and an expired one is not recreated without a TTL.
# A retry of this very delivery (its token already stored) changes nothing: one attempt.
# KEYS: job   ARGV: now, delivery token
_START_JOB = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
local ours = redis.call('HGET', KEYS[1], 'delivery') == ARGV[2]
if (status == 'queued' or status == 'running') and not ours then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'delivery', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return redis.call('HGETALL', KEYS[1])
"""

# End a job exactly once: only the first worker to finish a running job stores its outcome
# (a slow worker whose job was reclaimed finds it ended and only acknowledges). The entry is
# acknowledged and deleted in any case.
# A retry of a call whose reply was lost finds its own token in `ended_by` and says so.
# KEYS: job, result, input, stream, dead-letter stream
# ARGV: entry id, group, ttl, now, channel, job id, image or '', dead-letter min id or '',
#       delivery token, then the status fields
_END_JOB = """
redis.call('XACK', KEYS[4], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[4], ARGV[1])
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  if redis.call('HGET', KEYS[1], 'ended_by') == ARGV[9] then return 1 end
  return 0
end
local ttl = tonumber(ARGV[3])
if ARGV[7] ~= '' then redis.call('SET', KEYS[2], ARGV[7], 'EX', ttl) end
redis.call('HSET', KEYS[1], 'finished_at', ARGV[4], 'ended_by', ARGV[9], unpack(ARGV, 10))
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[8] ~= '' then
  -- Dead-lettered: keep the upload, so an operator can requeue the job.
  redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[8], '*', 'id', ARGV[6])
  redis.call('EXPIRE', KEYS[3], ttl)
else
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""


def start_job(redis: Redis, keys: Keys, delivery: Delivery) -> Job | None:
    """Mark the job running and count the attempt; None when it expired or was removed.

    A job that is not `running` afterwards was cancelled or has ended: the caller drops it.
    """
    flat = redis.eval(_START_JOB, 1, keys.job(delivery.job_id), str(time.time()), delivery.token)
    if not flat:
        return None
    return Job.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))


def load_input(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    """The uploaded image of an image job; None once it has expired."""
    data = redis.get(keys.input(job_id))
    return data.encode() if isinstance(data, str) else data


def finish_job(redis: Redis, keys: Keys, delivery: Delivery, image: bytes, ttl: int) -> bool:
    """Store the image and the done status, acknowledge, and announce it, all at once.

    False when another worker had already ended the job: nothing was stored.
    """
    return _end(redis, keys, delivery, ttl, {"status": str(JobStatus.DONE)}, image)


def fail_job(
    redis: Redis,
    keys: Keys,
    delivery: Delivery,
    error: tuple[str, str],
    ttl: int,
    dead_letter: bool = False,
) -> bool:
    """Store the failure `(code, message)`; with `dead_letter`, also list the job for an
    operator (see `worker.dead_letters`). False when another worker had already ended it."""
    code, message = error
    fields = {"status": str(JobStatus.FAILED), "error_code": code, "error_message": message}
    return _end(redis, keys, delivery, ttl, fields, None, dead_letter)


def drop_delivery(redis: Redis, keys: Keys, delivery: Delivery) -> None:
    """Acknowledge and delete an entry whose job expired, was cancelled or has ended."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.xack(keys.stream, keys.group, delivery.entry_id)
        pipe.xdel(keys.stream, delivery.entry_id)
        pipe.execute()


def _end(
    redis: Redis,
    keys: Keys,
    delivery: Delivery,
    ttl: int,
    fields: dict[str, str],
    image: bytes | None,
    dead_letter: bool = False,
) -> bool:
    job_id = delivery.job_id
    flat_fields = [item for pair in fields.items() for item in pair]
    ended = redis.eval(
        _END_JOB,
        5,
        keys.job(job_id),
        keys.result(job_id),
        keys.input(job_id),
        keys.stream,
        keys.dead_letters,
        delivery.entry_id,
        keys.group,
        str(ttl),
        str(time.time()),
        keys.finished_channel,
        job_id,
        image or b"",
        oldest_live_entry_id(ttl) if dead_letter else "",
        delivery.token,
        *flat_fields,
    )
    return bool(ended)


def _delivery(entry_id: bytes | str, fields: dict[bytes, bytes], consumer: str) -> Delivery:
    entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Delivery(entry, fields[b"id"].decode(), consumer)


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
