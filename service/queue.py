"""The front's side of the queue: store a job and put it on the stream; read and cancel jobs.

Queueing is one Lua script, so the backpressure check, the idempotency key, the job, its
upload and the stream entry are written all together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from renderq.errors import ErrorCode, InvalidRequest, QueueUnavailable
from renderq.job_tags import as_bytes, new_tag_key
from renderq.jobs import Job
from renderq.keys import Keys, oldest_live_entry_id

# KEYS: job, stream, input, idempotency key ('' for none)
# ARGV: ttl, max queued, oldest live entry id, job id, idempotency value, upload or '',
#       then the job's hash fields
_ENQUEUE = """
local ttl = tonumber(ARGV[1])
if KEYS[4] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {'existing', existing} end
end
-- A retry of this very call, whose reply was lost to a Redis restart: already queued.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'queued', ARGV[4]} end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {'full', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ttl) end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'EX', ttl) end
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ARGV[4])
return {'queued', ARGV[4]}
"""

# Cancel only a job that no worker has started; answer the status it had.
# KEYS: job, input   ARGV: now, finished channel, job id
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return status
"""


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key and a digest of what it asked for under that key."""

    key: str
    digest: str

    @classmethod
    def of(cls, key: str, job: Job, upload: bytes | None) -> Idempotency:
        digest = hashlib.sha256(repr(sorted(job.request.items())).encode())
        digest.update(upload or b"")
        return cls(key, digest.hexdigest())


async def enqueue_job(
    redis: Redis,
    keys: Keys,
    job: Job,
    limits: tuple[int, int],
    upload: bytes | None = None,
    idempotency: Idempotency | None = None,
) -> str:
    """Queue `job` and return its id, or the id of the job already queued under the same
    idempotency key. `limits` is (ttl, max queued); past the latter this raises QueueFull."""
    ttl, max_queued = limits
    fields = [item for pair in job.to_redis().items() for item in pair]
    idem_key = keys.idempotency(idempotency.key) if idempotency else ""
    outcome, value = await redis.eval(
        _ENQUEUE,
        4,
        keys.job(job.id),
        keys.stream,
        keys.input(job.id),
        idem_key,
        ttl,
        max_queued,
        oldest_live_entry_id(ttl),
        job.id,
        f"{job.id} {idempotency.digest}" if idempotency else "",
        upload or b"",
        *fields,
    )
    if outcome == b"full":
        raise QueueUnavailable(
            ErrorCode.QUEUE_FULL, f"more than {max_queued} jobs are waiting; try again shortly"
        )
    if outcome == b"existing":
        return _existing_job_id(value.decode(), idempotency)
    return job.id


def _existing_job_id(stored: str, idempotency: Idempotency | None) -> str:
    job_id, _, digest = stored.partition(" ")
    if idempotency is not None and digest != idempotency.digest:
        raise InvalidRequest(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for a different request",
            "Idempotency-Key",
        )
    return job_id


async def cancel_job(redis: Redis, keys: Keys, job_id: str) -> str | None:
    """Cancel a queued job; the status it had before (None when unknown or expired)."""
    status = await redis.eval(
        _CANCEL, 2, keys.job(job_id), keys.input(job_id), time.time(), keys.finished_channel, job_id
    )
    return None if status is None else str(status.decode())


async def load_job(redis: Redis, keys: Keys, job_id: str) -> Job | None:
    """The job, or None when the id is unknown or the job has expired."""
    raw = await redis.hgetall(keys.job(job_id))
    return Job.from_redis(raw) if raw else None


async def load_result(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    result = await redis.get(keys.result(job_id))
    return result.encode() if isinstance(result, str) else result


async def load_job_tag_key(redis: Redis, keys: Keys) -> bytes:
    """The deployment's secret for job tags, created by whichever process asks first."""
    offered = new_tag_key()
    await redis.set(keys.job_tag_key, offered, nx=True)
    stored = await redis.get(keys.job_tag_key)
    return as_bytes(stored or offered)


async def live_worker_reports(redis: Redis, keys: Keys, ttl: int) -> list[dict[str, Any]]:
    """The reports of the workers that renewed theirs within `ttl` seconds."""
    found: Any = await redis.zrangebyscore(keys.workers, time.time() - ttl, "+inf")
    names = sorted(as_bytes(name).decode() for name in found)
    if not names:
        return []
    reports = await redis.mget([keys.worker(name) for name in names])
    return [json.loads(report) for report in reports if report is not None]
