"""The front's side of the queue: store a job and put it on the stream; read and cancel jobs.

The protocol (the job hash, the scripts and their arguments) is `renderq.queue_protocol`;
this module runs its calls on the front's async Redis client.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from renderq.errors import ErrorCode, InvalidRequest, QueueUnavailable
from renderq.job_tags import as_bytes, new_tag_key
from renderq.jobs import STATUS_FIELDS, Job
from renderq.keys import Keys
from renderq.queue_protocol import (
    Idempotency,
    QueueLimits,
    ScriptCall,
    cancel_call,
    enqueue_call,
)


async def run_script(redis: Redis, call: ScriptCall) -> Any:
    """Run `call` by the script's SHA1, sending its text only if Redis does not know it."""
    script = call.script
    try:
        return await redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        await redis.script_load(script.source)
        return await redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)


async def enqueue_job(
    redis: Redis,
    keys: Keys,
    job: Job,
    limits: QueueLimits,
    upload: bytes | None = None,
    idempotency: Idempotency | None = None,
) -> str:
    """Queue `job` and return its id, or the id of the job already queued under the same
    idempotency key. Past `limits.max_queued` jobs this raises QueueUnavailable."""
    call = enqueue_call(keys, job.to_redis(), limits, upload, idempotency)
    outcome, value = await run_script(redis, call)
    if outcome == b"full":
        raise QueueUnavailable(
            ErrorCode.QUEUE_FULL,
            f"more than {limits.max_queued} jobs are waiting; try again shortly",
        )
    if outcome == b"existing":
        return _existing_job_id(value.decode(), idempotency)
    return job.id


def _existing_job_id(stored: str, idempotency: Idempotency | None) -> str:
    if idempotency is not None and not idempotency.same_request(stored):
        raise InvalidRequest(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for a different request",
            "Idempotency-Key",
        )
    return stored.partition(" ")[0]


async def cancel_job(redis: Redis, keys: Keys, job_id: str) -> str | None:
    """Cancel a queued job; the status it had before (None when unknown or expired)."""
    status = await run_script(redis, cancel_call(keys, job_id, time.time()))
    return None if status is None else str(status.decode())


async def load_job(redis: Redis, keys: Keys, job_id: str) -> Job | None:
    """The job without its request (no route of the front needs it), or None when the id is
    unknown or the job has expired: one read of its hash."""
    values = await redis.hmget(keys.job(job_id), STATUS_FIELDS)
    if values[0] is None:  # no id: no hash
        return None
    return Job.from_redis(dict(zip(STATUS_FIELDS, values, strict=True)))


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
