"""The front's side of the queue: store a job and put it on the stream; read jobs back."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from renderq.jobs import Job
from renderq.keys import Keys


async def enqueue_job(
    redis: Redis, keys: Keys, job: Job, ttl: int, upload: bytes | None = None
) -> Job:
    """Store the job (and its upload) and add its id to the stream in one transaction, so no
    job is ever half-queued."""
    job = job.with_changes(queued_at=time.time())
    async with redis.pipeline(transaction=True) as pipe:
        if upload is not None:
            pipe.set(keys.input(job.id), upload, ex=ttl)
        pipe.hset(keys.job(job.id), mapping=job.to_redis())
        pipe.expire(keys.job(job.id), ttl)
        pipe.xadd(keys.stream, {"id": job.id})
        await pipe.execute()
    return job


async def load_job(redis: Redis, keys: Keys, job_id: str) -> Job | None:
    """The job, or None when the id is unknown or the job has expired."""
    raw = await redis.hgetall(keys.job(job_id))
    return Job.from_redis(raw) if raw else None


async def load_result(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    result = await redis.get(keys.result(job_id))
    return result.encode() if isinstance(result, str) else result
