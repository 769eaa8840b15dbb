"""Faults of real deployments: a frozen Redis, and a primary killed under Sentinel.

Each test runs real processes against Redis servers of its own, and makes the fault happen:
SIGSTOP (a Redis that neither answers nor refuses: a long fork, a full disk, a network that
drops packets) and SIGKILL of the primary.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from redis import Redis

from renderq.keys import Keys
from renderq.redis_connection import open_redis
from renderq.replication import NotReplicated, ReplicaAcks
from renderq.settings import Settings
from tests.conftest import environ_for, job_tag
from tests.processes import Processes, RedisServer, Sentinels, wait_until
from tests.test_reliability import job_field, post_slow_job, wait_running

KEYS = Keys()


@dataclass
class Replication:
    """A primary (AOF, a password) with the test's front and workers on it, and a replica
    started when the test asks."""

    directory: Path
    password: str
    primary: RedisServer
    redis: Redis
    processes: Processes
    replica: RedisServer | None = None

    def start_replica(self) -> RedisServer:
        data = self.directory / "replica"
        data.mkdir()
        self.replica = RedisServer.start(
            data, password=self.password, aof=True, replica_of=self.primary.port
        )
        wait_until(lambda: in_sync(self.redis), 30, "the replica to be in sync")
        return self.replica


@pytest.fixture
def replication(tmp_path: Path) -> Iterator[Replication]:
    password = secrets.token_urlsafe(12)
    data = tmp_path / "primary"
    data.mkdir()
    primary = RedisServer.start(data, password=password, aof=True)
    processes = Processes(primary.url, tmp_path, environ_for(primary.url))
    with Redis.from_url(primary.url) as redis:
        pair = Replication(tmp_path, password, primary, redis, processes)
        yield pair
        processes.stop_all()
    if pair.replica is not None:
        pair.replica.stop()
    primary.stop()


def post_text(base: str, text: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(f"{base}/jobs", json={"text": text}, timeout=timeout)


def test_a_own_redis_gets_503_at_once_and_loses_nothing(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """Every answer comes within the client's 5 s (the deadline is 2 s; without one it was
    40 s), the breaker then answers at once, a long poll ends with its 202 on time, and the
    job being rendered ends once, by its own worker, after Redis thaws."""
    procs = Processes(own_redis.url, tmp_path, environ_for(own_redis.url))
    redis = Redis.from_url(own_redis.url)
    try:
        base = procs.start_front()
        front = procs.started[0]
        worker = procs.start("worker")
        job_id = post_slow_job(base)
        wait_running(redis, job_id, 1)
        with ThreadPoolExecutor(1) as pool:
            long_poll = pool.submit(httpx.get, f"{base}/jobs/{job_id}?wait=3", timeout=6)
            time.sleep(0.2)
            own_redis.process.send_signal(signal.SIGSTOP)
            try:
                for attempt in range(3):
                    refused = post_text(base, f"while frozen {attempt}")
                    assert refused.status_code == 503
                    assert refused.json()["error"]["code"] == "redis_unavailable"
                    assert refused.headers["retry-after"] == "1"
                procs.wait_for_log(front, "redis_breaker_opened", timeout=5)
                assert post_text(base, "breaker open", timeout=0.5).status_code == 503
                assert httpx.get(f"{base}/healthz", timeout=0.5).status_code == 503
                assert long_poll.result().status_code == 202
            finally:
                own_redis.process.send_signal(signal.SIGCONT)
        wait_until(lambda: post_text(base, "thawed").status_code == 202, 10, "the breaker")
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        done = httpx.get(f"{base}/jobs/{job_id}?wait=30", timeout=40)
        assert done.status_code == 200
        assert job_field(redis, job_id, "attempts") == "1"
        slow_job = job_tag(redis, job_id)

        def slow_job_ends() -> int:
            return [line["job"] for line in worker.events("job_done")].count(slow_job)

        wait_until(lambda: slow_job_ends() > 0, 10, "the slow job's end in the log", [worker])
        assert slow_job_ends() == 1
        assert procs.started[0].events("redis_breaker_closed")
    finally:
        procs.stop_all()
        redis.close()


@dataclass
class Submissions:
    """Text jobs submitted under Idempotency-Keys, each retried until it gets its 202; the
    times during which the front answered 503 (or did not answer) are recorded."""

    base: str
    accepted: dict[str, str] = field(default_factory=dict)  # key -> job id
    refusals: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, number: int) -> None:
        key = f"failover-{number}-{secrets.token_hex(4)}"
        refused_since: float | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"{self.base}/jobs",
                    json={"text": f"job {number}"},
                    headers={"Idempotency-Key": key},
                    timeout=5,
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 202:
                with self.lock:
                    self.accepted[key] = response.json()["id"]
                    if refused_since is not None:
                        self.refusals.append((refused_since, time.monotonic()))
                return
            refused_since = refused_since or time.monotonic()
            time.sleep(0.2)
        raise AssertionError(f"job {number} was never accepted")

    @property
    def longest_refusal(self) -> float:
        return max((end - start for start, end in self.refusals), default=0.0)


def test_a_killed_primary_fails_over_and_no_accepted_job_is_lost(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """A primary, a replica and three Sentinels; a front and two workers find the primary
    through the Sentinels. The primary is killed (SIGKILL) while jobs pour in: every job that
    got its 202 ends done exactly once, on the promoted replica."""
    password, sentinel_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    dirs = [tmp_path / name for name in ("primary", "replica", "sentinels")]
    for directory in dirs:
        directory.mkdir()
    primary = RedisServer.start(dirs[0], password=password, aof=True)
    replica = RedisServer.start(dirs[1], password=password, aof=True, replica_of=primary.port)
    sentinels = Sentinels.start(dirs[2], primary, sentinel_password)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "redis").write_text(password)
    (secrets_dir / "sentinel").write_text(sentinel_password)
    env = {
        "REDIS_URL": "redis://127.0.0.1/0",  # with Sentinels, only the database counts
        "REDIS_SENTINELS": sentinels.addresses,
        "REDIS_SENTINEL_MASTER": Sentinels.MASTER,
        "RENDERQ_REDIS_PASSWORD_FILE": str(secrets_dir / "redis"),
        "RENDERQ_REDIS_SENTINEL_PASSWORD_FILE": str(secrets_dir / "sentinel"),
        "RENDERQ_WORKER_BLOCK_MS": "200",
    }
    procs = Processes(env["REDIS_URL"], tmp_path, env)
    settings = Settings.from_env(env)
    try:
        base = procs.start_front()
        workers = [procs.start("worker", RENDERQ_WORKER_NAME=f"w{n}") for n in range(2)]
        submissions = Submissions(base)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(submissions.submit, n) for n in range(60)]
            wait_until(lambda: len(submissions.accepted) >= 20, 30, "20 jobs accepted")
            primary.process.kill()
            killed_at = time.monotonic()
            for future in futures:
                future.result()
        wait_until(lambda: sentinels.primary_port() == replica.port, 30, "the failover")
        record_property("failover_seconds_to_accept_again", round(submissions.longest_refusal, 2))
        record_property("seconds_since_kill", round(time.monotonic() - killed_at, 2))
        for job_id in submissions.accepted.values():
            done = httpx.get(f"{base}/jobs/{job_id}?wait=30", timeout=40)
            assert done.status_code == 200, (job_id, done.text)
        with open_redis(settings) as redis:
            tag_key = redis.get(KEYS.job_tag_key)
            assert tag_key is not None
        wait_until(
            lambda: sum(len(w.events("job_done")) for w in workers) >= 60, 10, "every end logged"
        )
        ended: Counter[str] = Counter()
        for worker in workers:
            ended.update(line["job"] for line in worker.events("job_done"))
        assert len(submissions.accepted) == 60
        # Tags are per deployment: compare counts, one ending per accepted job.
        assert sorted(ended.values()) == [1] * len(submissions.accepted), ended.most_common(3)
    finally:
        procs.stop_all()
        sentinels.stop()
        replica.stop()


def test_a_job_is_acknowledged_only_once_a_replica_has_it(replication: Replication) -> None:
    """With a replica that stops answering, POST /jobs answers 503 `not_replicated` (the job
    is on the primary only); once the replica is back, the retry under the same
    Idempotency-Key gets its 202, and the one job it names is rendered."""
    replica, redis = replication.start_replica(), replication.redis
    base = replication.processes.start_front()
    worker = replication.processes.start("worker")
    assert post_text(base, "replicated").status_code == 202
    key = {"Idempotency-Key": "replica-frozen"}
    replica.process.send_signal(signal.SIGSTOP)
    try:
        refused = httpx.post(f"{base}/jobs", json={"text": "x"}, headers=key, timeout=5)
    finally:
        replica.process.send_signal(signal.SIGCONT)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "not_replicated"
    wait_until(lambda: in_sync(redis), 30, "the replica to catch up")
    accepted = httpx.post(f"{base}/jobs", json={"text": "x"}, headers=key, timeout=5)
    assert accepted.status_code == 202
    done = httpx.get(f"{base}{accepted.headers['location']}?wait=20", timeout=30)
    assert done.status_code == 200
    assert len(redis.keys(KEYS.job("*"))) == 2, "the retry named the job already queued"
    assert len(worker.wait_for_events("job_done", count=2)) == 2, "two renders"


def test_a_write_that_did_not_wait_for_a_new_replica_is_refused(
    replication: Replication,
) -> None:
    """The front learned at start that the primary had no replica, so its first write sends
    no WAIT; the INFO read with it shows the replica that connected since: 503
    `not_replicated`, and the retry under the same key waits for the replica and names the
    same job."""
    base = replication.processes.start_front()
    replication.start_replica()
    key = {"Idempotency-Key": "new-replica"}
    refused = httpx.post(f"{base}/jobs", json={"text": "x"}, headers=key, timeout=5)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "not_replicated"
    accepted = httpx.post(f"{base}/jobs", json={"text": "x"}, headers=key, timeout=5)
    assert accepted.status_code == 202
    jobs = replication.redis.keys(KEYS.job("*"))
    assert len(jobs) == 1, "the retry named the job already queued"


def test_replica_acks_refuse_what_they_cannot_confirm() -> None:
    acks = ReplicaAcks(timeout_ms=100)
    acks.observe({"connected_slaves": 0})
    assert acks.wait_for == 0
    assert acks.settle("ok", None, None) == "ok", "no replica known, none asked: nothing to wait"
    with pytest.raises(NotReplicated) as refused:
        acks.settle("ok", None, {"connected_slaves": 1})  # sent no WAIT; a replica is there
    assert refused.value.result == "ok"
    assert acks.wait_for == 1
    assert acks.settle("ok", 1, None) == "ok"
    with pytest.raises(NotReplicated):
        acks.settle("ok", 0, {"connected_slaves": 1})  # the replica did not confirm in time
    assert acks.settle("ok", 0, {"connected_slaves": 0}) == "ok", "the replica is gone"
    assert acks.ask_info() and not acks.ask_info(), "at most one INFO an interval"


def in_sync(redis: Redis) -> bool:
    info: dict[str, Any] = redis.info("replication")
    replica = info.get("slave0")
    return isinstance(replica, dict) and replica.get("state") == "online"
