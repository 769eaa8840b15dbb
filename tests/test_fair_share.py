"""Fair share: each tenant has its own stream and workers take from the tenants in turn, so
one tenant's backlog does not hold another's jobs back; each tenant's cap, place in line and
every reliability promise hold per tenant. Real Redis, real workers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from bench.fair_share import measure_fairness, tenant_jobs
from renderq.errors import ErrorCode, QueueUnavailable, TooManyRequests
from renderq.jobs import Job
from renderq.keys import Keys
from renderq.queue_protocol import Ending, JobFailure, QueueLimits
from renderq.settings import Settings
from renderq.tenants import DEFAULT_TENANT
from renderq.time_left import TimeLeft
from renderq.vocabulary import JobStatus
from service.queue import Queued, cancel_job, enqueue_job, load_job_view, load_queue_depth
from tests.processes import Processes, wait_until
from worker.loop import Worker
from worker.queue import Taken, end_job, requeue_job, take_next_job

KEYS = Keys()
LIMITS = QueueLimits(ttl=3600, max_queued=10000)
RunWorker = Callable[..., Worker]


def enqueue(
    settings: Settings, jobs: Sequence[Job], limits: QueueLimits = LIMITS, cap: int = 0
) -> list[Queued | Exception]:
    """Queue `jobs` in order as a front does; a refusal is returned in its job's place."""

    async def queue_all() -> list[Queued | Exception]:
        answers: list[Queued | Exception] = []
        async with AsyncRedis.from_url(settings.redis_url) as client:
            for job in jobs:
                try:
                    answers.append(
                        await enqueue_job(client, KEYS, job, limits, tenant_max_queued=cap)
                    )
                except (TooManyRequests, QueueUnavailable) as refused:
                    answers.append(refused)
        return answers

    return asyncio.run(queue_all())


def test_a_small_tenant_is_served_before_a_big_backlog_moves_on(
    processes: Processes, redis: Redis, redis_url: str
) -> None:
    """Tenant A has 500 jobs queued and two workers on them; tenant B then queues 5. B's 5
    end before A's next 20: the workers alternate between the tenants with work (first in,
    first out would leave B behind all of A's jobs). Measured as `python -m bench.fair_share`
    measures it."""
    big, small = tenant_jobs("tenant-a", 500), tenant_jobs("tenant-b", 5)

    def start_workers() -> None:
        for name in ("w1", "w2"):
            processes.start("worker", RENDERQ_WORKER_NAME=name)

    figure = measure_fairness(redis, redis_url, big, small, start_workers)
    # The workers drain a few hundred jobs a second, so A's backlog when B queued varies from
    # run to run; what matters is that plenty of it was still waiting after B's last job.
    assert figure.backlog_waiting - figure.big_meanwhile > 100, "A's backlog had run out"
    assert figure.big_meanwhile < 20, f"{figure.big_meanwhile} of A's jobs ended meanwhile"
    # Each of B's waited for the jobs in hand and a turn or two, however slowly B queued.
    assert figure.worst_wait <= 10


def test_the_tenants_cap_refuses_its_jobs_only(settings: Settings, redis: Redis) -> None:
    """A tenant past its own cap of waiting jobs gets 429 `tenant_queue_full`; another tenant
    still queues, and the whole queue's cap counts every tenant's jobs."""
    capped = enqueue(settings, tenant_jobs("capped", 3), cap=2)
    assert [type(answer) for answer in capped] == [Queued, Queued, TooManyRequests]
    refused = capped[2]
    assert isinstance(refused, TooManyRequests)
    assert (refused.status, refused.code) == (429, ErrorCode.TENANT_QUEUE_FULL)
    assert redis.xlen(KEYS.tenant_stream("capped")) == 2, "the refused job left nothing"
    # A job that has started no longer waits: the tenant may queue one more.
    taken = take_next_job(redis, KEYS, LIMITS, "a-worker")
    assert isinstance(taken, Taken) and taken.delivery.tenant == "capped"
    again = enqueue(settings, tenant_jobs("capped", 2), cap=2)
    assert [type(answer) for answer in again] == [Queued, TooManyRequests]
    whole = QueueLimits(ttl=3600, max_queued=4)
    others = enqueue(settings, tenant_jobs("other", 2), whole, cap=2)
    assert [type(answer) for answer in others] == [Queued, QueueUnavailable]
    full = others[1]
    assert isinstance(full, QueueUnavailable) and full.code == ErrorCode.QUEUE_FULL


def test_place_in_line_is_counted_in_the_tenants_own_queue(
    settings: Settings, redis: Redis
) -> None:
    """Another tenant's backlog is not ahead of a job: its position counts its own tenant's
    jobs, and its ETA its tenant's share of the rate (one turn in every two here)."""
    enqueue(settings, tenant_jobs("big", 30))
    mine = tenant_jobs("small", 3)
    queued = enqueue(settings, mine)
    assert [answer.seq for answer in queued if isinstance(answer, Queued)] == [1, 2, 3]
    assert all(isinstance(answer, Queued) and answer.tenants == 2 for answer in queued)

    async def view(tenant: str) -> Any:
        async with AsyncRedis.from_url(settings.redis_url) as client:
            return await load_job_view(client, KEYS, mine[2].id, False, tenant)

    # Read in its own tenant's order, or found out after a guess of another tenant.
    for guess in ("small", DEFAULT_TENANT):
        seen = asyncio.run(view(guess))
        assert (seen.job.seq, seen.started_seq, seen.tenants) == (3, 0, 2)
    taken = take_next_job(redis, KEYS, LIMITS, "a-worker")
    assert isinstance(taken, Taken) and taken.delivery.tenant in ("big", "small")
    second = take_next_job(redis, KEYS, LIMITS, "a-worker")
    assert isinstance(second, Taken)
    assert {taken.delivery.tenant, second.delivery.tenant} == {"big", "small"}, "turns"
    assert asyncio.run(view("small")).started_seq == 1
    # Its ETA: (2 ahead + 1) jobs at half of 2 jobs/s, its share with one other tenant.
    assert TimeLeft.of(3, 0, 2.0, 2) == TimeLeft(2, 3.0)


def test_a_tenants_job_is_cancelled_reclaimed_and_requeued_on_its_own_stream(
    settings: Settings, redis: Redis, run_worker: RunWorker
) -> None:
    """Cancellation, a dead worker's job, the dead letters and the end: each on the job's own
    tenant's stream."""
    cancelled, orphan, poison = tenant_jobs("acme", 3)
    enqueue(settings, [cancelled, orphan, poison])

    async def cancel() -> str | None:
        async with AsyncRedis.from_url(settings.redis_url) as client:
            return await cancel_job(client, KEYS, cancelled.id, LIMITS)

    assert asyncio.run(cancel()) == JobStatus.QUEUED
    assert redis.xlen(KEYS.tenant_stream("acme")) == 2, "its entry is gone"
    # A worker that died holding the next job (it never had a lease), and one whose job
    # ended in the dead letters.
    dead = take_next_job(redis, KEYS, LIMITS, "dead-worker")
    assert isinstance(dead, Taken) and dead.delivery.job_id == orphan.id
    doomed = take_next_job(redis, KEYS, LIMITS, "doomed-worker")
    assert isinstance(doomed, Taken) and doomed.delivery.job_id == poison.id
    failure = JobFailure(ErrorCode.TOO_MANY_ATTEMPTS, "delivered too often")
    assert end_job(redis, KEYS, doomed.delivery, Ending.failed(failure, True), LIMITS)
    dead_letters: Any = redis.xrange(KEYS.dead_letters)
    entry_id = dead_letters[0][0].decode()
    assert requeue_job(redis, KEYS, entry_id, poison.id, LIMITS)
    assert redis.hget(KEYS.job(poison.id), "status") == b"queued"
    worker = run_worker()
    assert worker.jobs_done == 2, "the orphan, reclaimed, and the requeued job"
    for job in (orphan, poison):
        assert redis.hget(KEYS.job(job.id), "status") == b"done"
    assert redis.exists(KEYS.tenant_stream("acme")) == 0, "an emptied tenant's stream goes"
    assert redis.zrange(KEYS.tenants, 0, -1) == []
    # Nothing of the tenant's outlives its work (its numbering included), and its next job
    # is numbered again from the start: nothing ahead of it.
    assert redis.keys("*:acme") == []
    (back,) = enqueue(settings, tenant_jobs("acme", 1))
    assert isinstance(back, Queued) and (back.seq, back.started_seq) == (1, 0)
    assert redis.hget(KEYS.job(cancelled.id), "status") == b"cancelled"


def test_jobs_an_earlier_front_left_on_the_default_stream_are_still_taken(
    settings: Settings, redis: Redis, run_worker: RunWorker
) -> None:
    """A deployment upgraded with jobs waiting on the one stream of before: that stream is
    the default tenant's, and its jobs take turns with the other tenants' (they made no
    turn for themselves), rather than wait behind every other tenant's backlog."""
    legacy = tenant_jobs(DEFAULT_TENANT, 1)[0]
    fields = {key: value for key, value in legacy.to_redis().items() if key != "tenant"}
    redis.hset(KEYS.job(legacy.id), mapping=fields)
    redis.xadd(KEYS.stream, {"id": legacy.id})
    enqueue(settings, tenant_jobs("newer", 3))
    first = [take_next_job(redis, KEYS, LIMITS, "a-worker") for _ in range(2)]
    taken = [turn.delivery for turn in first if isinstance(turn, Taken)]
    assert legacy.id in [delivery.job_id for delivery in taken], "its turn, not the last"
    for delivery in taken:
        assert end_job(redis, KEYS, delivery, Ending.done(b"image"), LIMITS)
    worker = run_worker()
    assert worker.jobs_done == 2
    assert redis.hget(KEYS.job(legacy.id), "status") == b"done"


def test_depth_and_metrics_count_every_tenant(
    client: TestClient, settings: Settings, redis: Redis
) -> None:
    enqueue(settings, tenant_jobs("one", 2))
    enqueue(settings, tenant_jobs("two", 3))
    take_next_job(redis, KEYS, LIMITS, "a-worker")

    async def depth() -> Any:
        async with AsyncRedis.from_url(settings.redis_url) as front_redis:
            return await load_queue_depth(front_redis, KEYS)

    found = asyncio.run(depth())
    assert (found.entries, found.running, found.waiting) == (5, 1, 4)
    assert found.held == {"a-worker": 1}
    assert sum(entries for entries, _running in found.by_tenant.values()) == 5
    exposition = client.get("/metrics").text
    assert "renderq_jobs_queued 4.0" in exposition
    assert 'renderq_tenant_jobs_queued{tenant="two"}' in exposition


def wait_for_end(redis: Redis, job: Job) -> None:
    wait_until(lambda: redis.hget(KEYS.job(job.id), "status") == b"done", 20, "the job")


def test_an_idle_worker_is_woken_by_any_tenants_job(
    processes: Processes, redis: Redis, settings: Settings
) -> None:
    """Workers wait on the wake stream, which every queued job adds to, whatever its tenant:
    a job queued while the worker waits (30 s here) is taken before the wait is over."""
    worker = processes.start("worker", RENDERQ_WORKER_BLOCK_MS="30000")
    for job in (*tenant_jobs(DEFAULT_TENANT, 1), *tenant_jobs("x", 1)):
        wait_until(lambda: any(c["cmd"] == "xread" for c in redis.client_list()), 20, "a wait")
        enqueue(settings, [job])
        wait_for_end(redis, job)
    assert len(worker.events("job_done")) == 2
    worker.process.kill()  # rather than wait out its 30 s wait


def test_with_one_tenant_a_busy_worker_still_takes_a_job_in_one_round_trip(
    settings: Settings, redis: Redis, run_worker: RunWorker
) -> None:
    """Fair share costs RENDERQ_AUTH=off deployments no round trip: with work waiting, a
    worker's only commands per job are the script that takes and starts it and the one that
    ends it (besides a few per run: its lease, its look for orphans). Counted by Redis's
    MONITOR, which shows what each client sent apart from what scripts ran."""
    jobs = 60
    enqueue(settings, tenant_jobs(DEFAULT_TENANT, jobs))
    sent: list[str] = []
    listening = threading.Event()

    def watch() -> None:
        with Redis.from_url(settings.redis_url) as client, client.monitor() as monitor:
            listening.set()
            for command in monitor.listen():
                if command["command"] == "ECHO end-of-run":
                    return
                if command["client_type"] != "lua":
                    sent.append(command["command"].split(" ", 1)[0].upper())

    watcher = threading.Thread(target=watch)
    watcher.start()
    listening.wait(5)
    assert run_worker().jobs_done == jobs
    redis.echo("end-of-run")
    watcher.join(5)
    # Two scripts a job; a few more a run: each script's first call (NOSCRIPT, then again),
    # the take that finds the queue empty, the retirement. Any other command comes with
    # the time the run takes (the lease, the look for orphans), not with the jobs: a round
    # trip more per job would be `jobs` more.
    scripts = sent.count("EVALSHA")
    assert 2 * jobs <= scripts <= 2 * jobs + 8, sent
    assert len(sent) - scripts < jobs, sent
