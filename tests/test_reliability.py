"""Reliability promises, each tested by making its fault happen for real."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from renderq.jobs import Job
from renderq.keys import SERIES_SECONDS, Keys
from renderq.queue_protocol import Delivery, Ending, JobFailure, QueueLimits
from renderq.settings import Settings
from renderq.vocabulary import JobKind, JobStatus
from service.app import create_app
from service.queue import enqueue_job
from tests.conftest import environ_for, job_tag
from tests.processes import Processes, RedisServer, wait_until
from worker.dead_letters import main as dead_letters_main
from worker.loop import Worker
from worker.queue import (
    Idle,
    Taken,
    end_job,
    ensure_group,
    read_next_job,
    requeue_job,
    start_job,
    take_next_job,
)

KEYS = Keys()
LIMITS = QueueLimits(ttl=3600, max_queued=100)
RunWorker = Callable[..., Worker]


def slow_upload() -> bytes:
    """An image whose blur keeps a worker busy for a few seconds."""
    out = io.BytesIO()
    Image.effect_noise((1500, 1500), 40).convert("RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()


SLOW_OPS = json.dumps([{"op": "blur", "radius": 20}])


def post_slow_job(base: str) -> str:
    files = {"file": ("slow.png", slow_upload(), "image/png")}
    data = {"ops": SLOW_OPS, "engine": "imagemagick"}
    response = httpx.post(f"{base}/jobs", files=files, data=data, timeout=30)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def job_field(redis: Redis, job_id: str, name: str) -> str | None:
    value = redis.hget(KEYS.job(job_id), name)
    return value.decode() if isinstance(value, bytes) else value


def job_owner(redis: Redis, job_id: str) -> str:
    """The consumer name of the worker the job's latest delivery went to."""
    return (job_field(redis, job_id, "delivery") or "").split(" ")[0]


def consumers(redis: Redis) -> list[str]:
    return sorted(c["name"].decode() for c in redis.xinfo_consumers(KEYS.stream, KEYS.group))


def wait_running(redis: Redis, job_id: str, attempt: int) -> None:
    def running() -> bool:
        return job_field(redis, job_id, "status") == "running" and job_field(
            redis, job_id, "attempts"
        ) == str(attempt)

    wait_until(running, timeout=30, what=f"attempt {attempt} to be running")


# --- 1. a worker dies mid-job -----------------------------------------------------------


def test_job_of_a_killed_worker_is_reclaimed_and_stored_once(
    processes: Processes, redis: Redis
) -> None:
    """The other worker takes the job once the dead one's lease expires (3 s), not after a
    visibility timeout of minutes: the poll gives it 20 s, the render included."""
    base = processes.start_front()
    workers = {name: processes.start("worker", RENDERQ_WORKER_NAME=name) for name in "ab"}
    job_id = post_slow_job(base)
    wait_running(redis, job_id, 1)
    doomed = workers.pop(job_owner(redis, job_id))
    [rescuer] = workers.values()
    doomed.send_signal(signal.SIGKILL)  # the worker and, by PR_SET_PDEATHSIG, its child
    doomed.wait(10)
    done = httpx.get(f"{base}/jobs/{job_id}?wait=20", timeout=30)
    assert done.status_code == 200
    assert Image.open(io.BytesIO(done.content)).size == (1500, 1500)
    assert job_field(redis, job_id, "attempts") == "2"
    assert [line["job"] for line in rescuer.wait_for_events("job_done")] == [job_tag(redis, job_id)]
    assert doomed.events("job_done") == []
    assert redis.xpending(KEYS.stream, KEYS.group)["pending"] == 0
    wait_until(
        lambda: consumers(redis) == [job_owner(redis, job_id)],
        timeout=10,
        what="the dead worker to leave the consumer group",
    )


def test_a_restarted_worker_takes_its_own_job_back_at_once(
    processes: Processes, redis: Redis
) -> None:
    """Restarted under the same name (as supervisord does), a worker resumes its job without
    waiting for its old lease to expire (a minute here): a new attempt of the same job."""
    base = processes.start_front()
    env = {"RENDERQ_WORKER_NAME": "host-worker-0", "RENDERQ_WORKER_LEASE_TTL": "60"}
    first = processes.start("worker", **env)
    job_id = post_slow_job(base)
    wait_running(redis, job_id, 1)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    again = processes.start("worker", **env)
    done = httpx.get(f"{base}/jobs/{job_id}?wait=20", timeout=30)
    assert done.status_code == 200
    assert job_field(redis, job_id, "attempts") == "2"
    assert [line["job"] for line in again.wait_for_events("job_done")] == [job_tag(redis, job_id)]


def test_a_worker_survives_its_stream_being_deleted_while_it_waits(
    processes: Processes, redis: Redis
) -> None:
    """A worker waiting for work while its stream is deleted (a FLUSHALL, an operator's DEL)
    recreates the stream and its group when it next looks for orphans (every third of a
    lease, short here), and takes the next job."""
    base = processes.start_front()
    quick = {"RENDERQ_WORKER_LEASE_TTL": "1", "RENDERQ_WORKER_BLOCK_MS": "100"}
    worker = processes.start("worker", **quick)
    wait_until(lambda: any(c["cmd"] == "xread" for c in redis.client_list()), 20, "a blocked read")
    redis.delete(KEYS.stream)
    wait_until(lambda: bool(redis.exists(KEYS.stream)), 10, "the stream made again", [worker])
    accepted = httpx.post(f"{base}/jobs", json={"text": "after the delete"}, timeout=5)
    done = httpx.get(f"{base}{accepted.headers['location']}?wait=20", timeout=30)
    assert done.status_code == 200
    assert worker.process.poll() is None
    assert len(worker.wait_for_events("job_done")) == 1


def test_a_slow_render_keeps_its_job_while_its_worker_lives(
    processes: Processes, redis: Redis
) -> None:
    """A render far longer than the lease (1 s here) is never taken from a live worker: the
    lease is renewed while the render runs, and an idle worker stands by."""
    base = processes.start_front()
    short = {"RENDERQ_WORKER_LEASE_TTL": "1"}
    workers = {name: processes.start("worker", RENDERQ_WORKER_NAME=name, **short) for name in "ab"}
    job_id = post_slow_job(base)
    done = httpx.get(f"{base}/jobs/{job_id}?wait=30", timeout=40)
    assert done.status_code == 200
    assert job_field(redis, job_id, "attempts") == "1"
    owner = job_owner(redis, job_id)
    workers[owner].wait_for_events("job_done")
    ended = {name: len(worker.events("job_done")) for name, worker in workers.items()}
    assert ended == {name: int(name == owner) for name in workers}
    assert all(worker.events("job_already_ended") == [] for worker in workers.values())


def test_take_reads_and_starts_a_job_in_one_call(redis: Redis, run_worker: RunWorker) -> None:
    """What a busy worker does between jobs: the entry is delivered to it and the job started
    under the same token a separate start would use, so its end is recognised as its own."""
    run_worker()  # creates the group
    nothing = take_next_job(redis, KEYS, LIMITS, "taker", "run-1")
    assert isinstance(nothing, Idle), "nothing new: no blocking"
    job = Job(id="T" * 22, kind=JobKind.TEXT, engine="pillow", format="png", request={"text": "x"})
    redis.hset(KEYS.job(job.id), mapping=job.to_redis())
    redis.expire(KEYS.job(job.id), 60)
    redis.xadd(KEYS.stream, {"id": job.id})
    redis.xadd(KEYS.stream, {"id": "E" * 22})  # a job that expired while queued
    taken = take_next_job(redis, KEYS, LIMITS, "taker", "run-1")
    assert isinstance(taken, Taken) and taken.job is not None
    assert taken.delivery == Delivery(taken.delivery.entry_id, job.id, "taker", "run-1")
    assert taken.job.status is JobStatus.RUNNING and taken.job.attempts == 1
    assert job_field(redis, job.id, "delivery") == taken.delivery.token
    assert redis.xpending(KEYS.stream, KEYS.group)["consumers"] == [
        {"name": b"taker", "pending": 1}
    ]
    assert start_job(redis, KEYS, LIMITS, taken.delivery) is not None
    assert job_field(redis, job.id, "attempts") == "1", "the same delivery starts once"
    expired = take_next_job(redis, KEYS, LIMITS, "taker", "run-1")
    assert isinstance(expired, Taken) and expired.job is None
    assert expired.delivery.job_id == "E" * 22


def test_a_job_is_ended_only_once(settings: Settings, redis: Redis, run_worker: RunWorker) -> None:
    job = Job(id="C" * 22, kind=JobKind.TEXT, engine="pillow", format="png", request={"text": "x"})
    redis.hset(KEYS.job(job.id), mapping=job.to_redis())
    redis.expire(KEYS.job(job.id), 60)
    run_worker()  # creates the group
    redis.xadd(KEYS.stream, {"id": job.id})
    first = read_next_job(redis, KEYS, "first", 100)
    assert first is not None
    start_job(redis, KEYS, LIMITS, first)
    # A second worker reclaimed the same entry while the first was slow.
    second = Delivery(first.entry_id, job.id, "second")
    started = start_job(redis, KEYS, LIMITS, second)
    assert started is not None
    assert started.attempts == 2
    # A script retried after Redis lost its reply (restarted mid-call) changes nothing.
    retried = start_job(redis, KEYS, LIMITS, second)
    assert retried is not None
    assert retried.attempts == 2
    # The first to finish wins; the other only acknowledges.
    assert end_job(redis, KEYS, first, Ending.done(b"first image"), LIMITS)
    assert not end_job(redis, KEYS, second, Ending.done(b"second"), LIMITS)
    assert redis.get(KEYS.result(job.id)) == b"first image"
    # The winner's retried call recognises its own end.
    assert end_job(redis, KEYS, first, Ending.done(b"first image"), LIMITS)


def test_a_job_whose_start_a_failover_lost_is_still_ended(
    settings: Settings, redis: Redis, run_worker: RunWorker
) -> None:
    """Starts are not waited for by a replica: after a failover the job may read `queued`
    while its worker renders it. Its end is stored all the same; a cancelled job's is not."""
    run_worker()  # creates the group
    for job_id, status, stored in (("Q" * 22, "queued", True), ("X" * 22, "cancelled", False)):
        job = Job(id=job_id, kind=JobKind.TEXT, engine="pillow", format="png", request={})
        redis.hset(KEYS.job(job.id), mapping={**job.to_redis(), "status": status})
        redis.expire(KEYS.job(job.id), 60)
        redis.xadd(KEYS.stream, {"id": job.id})
        delivery = read_next_job(redis, KEYS, "survivor", 100)
        assert delivery is not None
        assert end_job(redis, KEYS, delivery, Ending.done(b"image"), LIMITS) is stored
        assert job_field(redis, job_id, "status") == ("done" if stored else "cancelled")
    assert redis.xpending(KEYS.stream, KEYS.group)["pending"] == 0


# --- 2. poison jobs ----------------------------------------------------------------------


def test_poison_job_goes_to_the_dead_letters_and_can_be_requeued(
    processes: Processes, redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = {"RENDERQ_WORKER_LEASE_TTL": "1", "RENDERQ_MAX_ATTEMPTS": "2"}
    base = processes.start_front()
    job_id = post_slow_job(base)
    for attempt in (1, 2):
        worker = processes.start("worker", **limits)
        wait_running(redis, job_id, attempt)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    last = processes.start("worker", **limits)
    failed = httpx.get(f"{base}/jobs/{job_id}?wait=20", timeout=30)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "too_many_attempts"
    assert [line["job"] for line in last.wait_for_events("job_failed")] == [job_tag(redis, job_id)]

    with pytest.MonkeyPatch.context() as env:
        env.setenv("REDIS_URL", redis_url)
        dead_letters_main(["list"])
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(job["id"], job["attempts"]) for job in listed] == [(job_id, 3)]
        dead_letters_main(["requeue", job_id])
        assert json.loads(capsys.readouterr().out) == {"id": job_id, "requeued": True}
    assert redis.xlen(KEYS.dead_letters) == 0
    done = httpx.get(f"{base}/jobs/{job_id}?wait=30", timeout=40)
    assert done.status_code == 200, "the requeued job renders normally"


def test_the_dead_letter_command_takes_ids_that_start_with_a_dash(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = "-" + "A" * 21  # a 128-bit id in URL-safe base64 starts with "-" one time in 64
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REDIS_URL", redis_url)
        assert dead_letters_main(["requeue", job_id]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "id": job_id,
        "requeued": False,
        "reason": "not in the dead letters",
    }


def test_a_requeued_image_job_gets_its_upload_for_a_whole_ttl(
    client: TestClient, redis: Redis, run_worker: RunWorker
) -> None:
    """Requeueing is queueing again: the job and its upload live a whole TTL once more,
    however little was left of it when the job died."""
    files = {"file": ("x.png", slow_upload(), "image/png")}
    job_id = client.post("/jobs", files=files, data={"ops": "[]"}).json()["id"]
    [delivery] = claim_all(redis)
    start_job(redis, KEYS, LIMITS, delivery)
    poison = JobFailure("too_many_attempts", "delivered 4 times; each time its worker died")
    assert end_job(redis, KEYS, delivery, Ending.failed(poison, dead_letter=True), LIMITS)
    redis.expire(KEYS.input(job_id), 2)  # all but gone, as after a long wait in the dead letters
    entries: Any = redis.xrange(KEYS.dead_letters)
    [(entry_id, _fields)] = entries
    assert requeue_job(redis, KEYS, entry_id.decode(), job_id, LIMITS)
    assert redis.ttl(KEYS.input(job_id)) > 3500
    assert redis.ttl(KEYS.job(job_id)) > 3500
    time.sleep(2.5)  # past the TTL the upload would have had
    run_worker()
    assert client.get(f"/jobs/{job_id}").status_code == 200


def claim_all(redis: Redis) -> list[Delivery]:
    """Take every queued entry as a worker would, without rendering."""
    ensure_group(redis, KEYS)
    deliveries = []
    while (delivery := read_next_job(redis, KEYS, "test-claimer", 10)) is not None:
        deliveries.append(delivery)
    return deliveries


# --- 3. input failures fail once -----------------------------------------------------------


def test_input_failure_is_not_retried(client: TestClient, run_worker: RunWorker) -> None:
    job_id = client.post("/jobs", json={"text": "W" * 400, "size": 200}).json()["id"]
    run_worker()
    run_worker()
    status = client.get(f"/jobs/{job_id}/status").json()
    assert (status["status"], status["attempts"]) == ("failed", 1)


# --- 5. Redis goes away and comes back -------------------------------------------------------


def test_redis_restart_is_survived(own_redis: RedisServer, tmp_path: Path) -> None:
    procs = Processes(own_redis.url, tmp_path, environ_for(own_redis.url))
    try:
        base = procs.start_front()
        procs.start("worker")
        before = httpx.post(f"{base}/jobs", json={"text": "before"}).json()["id"]
        assert httpx.get(f"{base}/jobs/{before}?wait=20", timeout=30).status_code == 200

        own_redis.stop()  # a clean shutdown: the AOF is flushed
        down = httpx.post(f"{base}/jobs", json={"text": "while down"}, timeout=30)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "redis_unavailable"
        assert "retry-after" in down.headers
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 503

        own_redis.restart()
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        kept = httpx.get(f"{base}/jobs/{before}", timeout=30)
        assert kept.status_code == 200, "a job acknowledged before the restart is still there"
        after = httpx.post(f"{base}/jobs", json={"text": "after"}).json()["id"]
        # The worker reconnects by itself and takes the new job.
        assert httpx.get(f"{base}/jobs/{after}?wait=25", timeout=30).status_code == 200
    finally:
        procs.stop_all()


# --- 6. backpressure -------------------------------------------------------------------------


def test_full_queue_answers_503_with_retry_after(redis_url: str, redis: Redis) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_MAX_QUEUED="3"))
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.post("/jobs", json={"text": "x"}).status_code == 202
        full = client.post("/jobs", json={"text": "one too many"})
        assert full.status_code == 503
        assert full.json()["error"]["code"] == "queue_full"
        assert full.headers["retry-after"] == "1"
    assert redis.xlen(KEYS.stream) == 3


def test_a_full_redis_answers_503_and_loses_nothing(redis_url: str, redis: Redis) -> None:
    """With maxmemory and noeviction (as `make run`'s Redis), a full Redis refuses writes:
    the front answers 503 queue_full, and every job already queued is still there."""
    settings = Settings.from_env(environ_for(redis_url))
    with TestClient(create_app(settings)) as client:
        kept = client.post("/jobs", json={"text": "before"}).json()["id"]
        used = int(redis.info("memory")["used_memory"])
        redis.config_set("maxmemory-policy", "noeviction")
        redis.config_set("maxmemory", str(used))
        try:
            full = client.post("/jobs", json={"text": "x" * 1000})
        finally:
            redis.config_set("maxmemory", "0")
        assert full.status_code == 503
        assert full.json()["error"]["code"] == "queue_full"
        assert full.headers["retry-after"] == "1"
        assert client.get(f"/jobs/{kept}/status").json()["status"] == "queued"


def test_the_password_comes_from_its_file(
    redis_url: str, processes: Processes, tmp_path: Path
) -> None:
    """The front and the workers read the Redis password from a file, never from the URL
    or the environment, and never log it."""
    password = Redis.from_url(redis_url).connection_pool.connection_kwargs["password"]
    secret = tmp_path / "redis-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    bare_url = redis_url.replace(f":{password}@", "")
    with_file = {"REDIS_URL": bare_url, "RENDERQ_REDIS_PASSWORD_FILE": str(secret)}
    base = processes.start_front(**with_file)
    worker = processes.start("worker", **with_file)
    response = httpx.post(f"{base}/jobs", json={"text": "authenticated"})
    assert httpx.get(f"{base}{response.headers['location']}?wait=20").status_code == 200
    for proc in processes.started:
        assert password not in proc.log.read_text()
    worker.send_signal(signal.SIGTERM)
    worker.wait(10)


def test_stream_is_trimmed_of_entries_older_than_the_ttl(redis_url: str, redis: Redis) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_RESULT_TTL="1"))
    with TestClient(create_app(settings)) as client:
        for _ in range(300):
            client.post("/jobs", json={"text": "x"})
        time.sleep(1.2)
        client.post("/jobs", json={"text": "x"})
    # Trimming is approximate (whole stream nodes of 100 entries), never past live entries.
    assert redis.xlen(KEYS.stream) <= 101


# --- 7. expiry -----------------------------------------------------------------------------


def test_everything_expires(redis_url: str, redis: Redis, run_worker: RunWorker) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_RESULT_TTL="1"))
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/jobs", json={"text": "brief"}).json()["id"]
        run_worker(settings)
        assert client.get(f"/jobs/{job_id}").status_code == 200
        time.sleep(1.5)
        assert client.get(f"/jobs/{job_id}").status_code == 404
        assert client.get(f"/jobs/{job_id}/status").status_code == 404
    leftover = {key.decode() if isinstance(key, bytes) else key for key in redis.keys("*")}
    # Besides the (empty) stream, only what belongs to the deployment, not to a job, stays:
    # the tag key, the counters, the events, the (capped) wake stream, and the per-second
    # series, which expire themselves. No tenant has work left, so none takes turns. The
    # worker stopped cleanly: it gave its lease up and left the group.
    deployment = {KEYS.stream, KEYS.job_tag_key, KEYS.metrics, KEYS.events, KEYS.wake}
    deployment |= {KEYS.queued_seq, KEYS.started_seq}
    series = {
        key
        for key in leftover
        if key.startswith((KEYS.depth_in_second(0)[:-1], KEYS.ended_in_second(0)[:-1]))
    }
    assert leftover - series == deployment, "nothing of the job remains"
    assert all(0 < redis.ttl(key) <= SERIES_SECONDS for key in series)
    assert redis.xinfo_consumers(KEYS.stream, KEYS.group) == []


# --- 8. idempotency ------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_job(client: TestClient, redis: Redis) -> None:
    headers = {"Idempotency-Key": "order-42-thumbnail"}
    first = client.post("/jobs", json={"text": "once"}, headers=headers)
    again = client.post("/jobs", json={"text": "once"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert redis.xlen(KEYS.stream) == 1
    other = client.post("/jobs", json={"text": "once"}, headers={"Idempotency-Key": "other"})
    assert other.json()["id"] != first.json()["id"]


def test_idempotency_key_reused_for_another_request_is_refused(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k1"}
    client.post("/jobs", json={"text": "first"}, headers=headers)
    clash = client.post("/jobs", json={"text": "second"}, headers=headers)
    assert clash.status_code == 422
    assert clash.json()["error"]["code"] == "idempotency_key_reused"
    bad = client.post("/jobs", json={"text": "x"}, headers={"Idempotency-Key": "x" * 256})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_header")


# --- 9. cancellation -------------------------------------------------------------------------


def test_cancelled_job_is_never_rendered(
    client: TestClient, run_worker: RunWorker, redis: Redis
) -> None:
    job_id = client.post("/jobs", json={"text": "never"}).json()["id"]
    cancelled = client.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    worker = run_worker()
    assert worker.jobs_done == 0
    assert redis.exists(KEYS.result(job_id)) == 0
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/status"):
        gone = client.get(path)
        assert (gone.status_code, gone.json()["error"]["code"]) == (410, "job_cancelled")
        assert gone.json()["job"]["status"] == "cancelled"
    assert client.delete(f"/jobs/{job_id}").status_code == 409


def test_running_job_cannot_be_cancelled_and_finishes(
    client: TestClient, run_worker: RunWorker, redis: Redis
) -> None:
    job_id = client.post("/jobs", json={"text": "in hand"}).json()["id"]
    start_job(
        redis, KEYS, LIMITS, Delivery("0-1", job_id, "a-worker")
    )  # as a worker taking it does
    refused = client.delete(f"/jobs/{job_id}")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "job_not_cancellable")
    assert "will finish" in refused.json()["error"]["message"]
    run_worker()
    assert client.get(f"/jobs/{job_id}").status_code == 200, "it finished all the same"
    assert client.delete(f"/jobs/{job_id}").status_code == 409, "an ended job stays"
    assert client.delete("/jobs/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404


def test_a_retried_enqueue_queues_once(settings: Settings, redis: Redis) -> None:
    job = Job(id="E" * 22, kind=JobKind.TEXT, engine="pillow", format="png", request={"text": "x"})

    async def enqueue_twice() -> None:
        async with AsyncRedis.from_url(settings.redis_url) as client:
            for _ in range(2):  # the second is what redis-py's retry sends after a lost reply
                await enqueue_job(client, KEYS, job, LIMITS)

    asyncio.run(enqueue_twice())
    assert redis.xlen(KEYS.stream) == 1
