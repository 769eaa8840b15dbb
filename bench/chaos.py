"""Chaos for the soak test: a cluster whose Redis persists like the deployment's and can be
restarted, frozen or failed over, and a thread that keeps striking it.

Workers are killed with SIGKILL, as the OOM killer would: nothing of theirs gets to run, so
their jobs must come back through the lease (`worker.reclaim`). A killed worker is replaced
either under a new name (another worker takes its job once its lease expires) or, as
supervisord restarts one, under its own name (it takes its job back at once). Redis gets
SIGTERM, as a service manager would send, and must come back from its append-only file with
everything it acknowledged; or SIGSTOP for a few seconds (a long fork, a full disk, a network
that drops packets), during which the front must answer 503 at once. With Sentinel, the
primary gets SIGKILL and a replica takes over; the old primary comes back as a replica.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from bench.cluster import Cluster
from renderq.keys import Keys
from tests.processes import Processes, RedisServer, Sentinels, wait_until

# Generous: Redis fsyncs its AOF on the way out, which is quick for the soak's data.
REDIS_STOP_TIMEOUT = 30.0
# A killed primary stays down this long (Sentinel promotes the replica meanwhile), then comes
# back as a replica of the new primary.
PRIMARY_DOWN = 4.0
KEYS = Keys()


class ChaosCluster(Cluster):
    """A `Cluster` whose Redis runs with AOF, so it can be stopped and started again with its
    data, and whose workers can be killed and replaced. With `failover`, Redis is a primary
    and a replica watched by three Sentinels, which the front and the workers go through.

    Each worker has a log file of its own, named as the worker, so the log of a killed worker
    stays for the checks after it is gone.
    """

    def __init__(
        self, log_dir: Path, env: Mapping[str, str] | None = None, failover: bool = False
    ) -> None:
        super().__init__(log_dir, env)
        self.failover = failover
        self.servers: list[RedisServer] = []
        self.sentinels: Sentinels | None = None
        self._gone: set[int] = set()  # pids of workers killed or replaced already

    @property
    def redis_url(self) -> str:
        """The current primary's URL (asked of the Sentinels, with failover)."""
        if self.sentinels is None:
            return super().redis_url
        port = self.sentinels.primary_port()
        server = next((s for s in self.servers if s.port == port), self.servers[0])
        return server.url

    def start_redis(self, aof: bool = True) -> None:
        """Start redis-server as deployed: AOF, fsync every second, no RDB snapshots; with
        failover, a replica and three Sentinels too."""
        if not self.failover:
            super().start_redis(aof=aof)
            self.servers = [self._redis()]
            return
        data = [self.log_dir / name for name in ("primary", "replica", "sentinels")]
        for directory in data:
            directory.mkdir(exist_ok=True)
        primary = RedisServer.start(data[0], aof=aof)
        replica = RedisServer.start(data[1], aof=aof, replica_of=primary.port)
        self.servers = [primary, replica]
        self.redis = primary
        self.sentinels = Sentinels.start(data[2], primary, password="soak-sentinels")
        secret = self.log_dir / "sentinel-password"
        secret.write_text(self.sentinels.password)
        self.env = {
            **self.env,
            "REDIS_SENTINELS": self.sentinels.addresses,
            "REDIS_SENTINEL_MASTER": Sentinels.MASTER,
            "RENDERQ_REDIS_SENTINEL_PASSWORD_FILE": str(secret),
        }
        self.processes = Processes("redis://127.0.0.1/0", self.log_dir, self.env)

    def restart_redis(self, down: float = 0.0) -> float:
        """SIGTERM Redis, wait for it to exit, leave it down `down` more seconds, start it
        again on the same port and dir; the seconds it was away."""
        server = self._redis()
        stopped_at = time.monotonic()
        server.stop()
        time.sleep(down)
        # A Redis still loading its AOF answers PING with LOADING, which counts as not ready.
        server.restart()
        return time.monotonic() - stopped_at

    def freeze_redis(self, seconds: float) -> None:
        """SIGSTOP the primary for `seconds`, then SIGCONT: it neither answers nor refuses."""
        server = self._primary()
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            server.process.send_signal(signal.SIGCONT)

    def kill_primary(self) -> bool:
        """SIGKILL the primary once its replica is in sync; start it again `PRIMARY_DOWN` s
        later, when Sentinel has promoted the replica, so it rejoins as a replica. False
        (nothing done) while no replica is ready to take over."""
        if self.sentinels is None or not self._replica_in_sync():
            return False
        primary = self._primary()
        primary.process.kill()
        primary.process.wait()
        time.sleep(PRIMARY_DOWN)
        primary.restart()
        return True

    def kill_worker(self, rng: random.Random, busy: bool = False) -> tuple[str, list[str]]:
        """SIGKILL a live worker (its sandbox dies with it). With `busy`, one holding a job,
        restarted under its own name as supervisord does; otherwise a random one, replaced
        by a worker under a new name. Its name, and the jobs it held."""
        live = [worker for worker in self.workers if worker.process.poll() is None]
        held = self._held_jobs()
        if busy:
            live = [worker for worker in live if held.get(worker.name)] or live
        victim = rng.choice(live) if live else None
        if victim is None:
            self.start_worker()
            return "none", []
        victim.process.kill()
        victim.process.wait()
        self._gone.add(victim.pid)
        self.start_worker(victim.name if busy else None)
        return victim.name, held.get(victim.name, [])

    def replace_exited_workers(self) -> int:
        """Start a replacement for every worker that exited by itself (none should: it is
        counted and reported), so the run keeps its number of workers."""
        exited = [
            worker
            for worker in self.workers
            if worker.pid not in self._gone and worker.process.poll() is not None
        ]
        for worker in exited:
            self._gone.add(worker.pid)
            self.start_worker()
        return len(exited)

    def close(self) -> None:
        for server in self.servers:
            server.process.send_signal(signal.SIGCONT)
        super().close()
        if self.sentinels is not None:
            self.sentinels.stop()
        for server in self.servers[1:]:
            server.stop()

    def _redis(self) -> RedisServer:
        if self.redis is None:
            raise RuntimeError("Redis is not running")
        return self.redis

    def _primary(self) -> RedisServer:
        if self.sentinels is None:
            return self._redis()
        port = self.sentinels.primary_port()
        return next(server for server in self.servers if server.port == port)

    def _replica_in_sync(self) -> bool:
        try:
            with Redis.from_url(self.redis_url, socket_timeout=1) as client:
                info: Any = client.info("replication")
        except RedisError:
            return False
        replicas = [info[k] for k in info if k.startswith("slave") and isinstance(info[k], dict)]
        return any(r.get("state") == "online" and int(r.get("lag", 99)) <= 1 for r in replicas)

    def _held_jobs(self) -> dict[str, list[str]]:
        """Per worker name, the ids of the jobs it has taken and not ended."""
        try:
            with Redis.from_url(self.redis_url, socket_timeout=1) as client:
                held: dict[str, list[str]] = {}
                pending: Any = client.xpending_range(KEYS.stream, KEYS.group, "-", "+", 100)
                for entry in pending:
                    for _id, fields in client.xrange(KEYS.stream, entry["message_id"], count=1):
                        name = entry["consumer"].decode()
                        held.setdefault(name, []).append(fields[b"id"].decode())
                return held
        except RedisError:
            return {}


@dataclass
class ChaosCounts:
    """What the chaos did, and what it found: workers that exited without being killed.

    `actions` holds (wall-clock time, what) of each action, so a job that misbehaved can be
    set beside the kill or restart nearest to it. `orphans` holds (wall-clock time of the
    kill, job id) for each job a killed worker held: the soak measures when each started
    again.
    """

    worker_kills: int = 0
    busy_worker_kills: int = 0
    redis_restarts: int = 0
    redis_freezes: int = 0
    primary_kills: int = 0
    worker_exits: int = 0
    redis_away_seconds: list[float] = field(default_factory=list)
    actions: list[tuple[float, str]] = field(default_factory=list)
    orphans: list[tuple[float, str]] = field(default_factory=list)


class Chaos:
    """Every 1.5 to 4 s (drawn from a seeded `random.Random`, so a run can be repeated), one
    action: kill a random worker and start a replacement, kill a worker mid-job and restart it
    under its name, restart Redis, freeze it, or (with failover) kill the primary; until
    `stop`.

    Redis stays down or frozen for up to `redis_down` seconds: long enough, at times, to
    outlast the front's deadline (so clients see 503 and retry under their Idempotency-Key)
    and to send the workers into their backoff.

    Runs in a thread of its own, since the cluster's calls block; the only caller of the
    cluster's process methods while it runs, so no lock is needed.
    """

    def __init__(
        self,
        cluster: ChaosCluster,
        rng: random.Random,
        pause: tuple[float, float] = (1.5, 4.0),
        redis_down: float = 2.0,
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.pause = pause
        self.redis_down = redis_down
        self.counts = ChaosCounts()
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the action in hand (bounded: a Redis restart waits at most ~50 s); raise
        what stopped the chaos early, if anything did, since the run would not be chaotic."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the chaos loop failed: {self.error}") from self.error

    def _run(self) -> None:
        try:
            while not self._halt.wait(self.rng.uniform(*self.pause)):
                self.counts.worker_exits += self.cluster.replace_exited_workers()
                self._strike()
        except Exception as exc:  # reported by `stop`
            self.error = exc

    def _strike(self) -> None:
        """One chaos action, chosen by the seeded generator."""
        at = time.time()
        draw = self.rng.random()
        counts = self.counts
        if self.cluster.failover and draw < 0.15 and self.cluster.kill_primary():
            counts.primary_kills += 1
            counts.actions.append((at, "SIGKILL of the primary"))
        elif not self.cluster.failover and draw < 0.12:
            down = self.rng.uniform(0.0, self.redis_down)
            counts.redis_away_seconds.append(self.cluster.restart_redis(down))
            counts.redis_restarts += 1
            counts.actions.append((at, "Redis SIGTERM"))
        elif not self.cluster.failover and draw < 0.24:
            frozen = self.rng.uniform(0.5, max(0.5, self.redis_down * 2))
            self.cluster.freeze_redis(frozen)
            counts.redis_away_seconds.append(frozen)
            counts.redis_freezes += 1
            counts.actions.append((at, f"Redis SIGSTOP for {frozen:.1f} s"))
        else:
            busy = draw > 0.62
            victim, held = self.cluster.kill_worker(self.rng, busy=busy)
            counts.worker_kills += 1
            counts.busy_worker_kills += busy
            counts.orphans += [(at, job_id) for job_id in held]
            how = "restarted under its name" if busy else "replaced"
            counts.actions.append((at, f"SIGKILL of {victim} ({how})"))


def wait_for_primary(cluster: ChaosCluster, timeout: float = 30.0) -> None:
    """Wait until the Sentinels name a primary that answers."""

    def answers() -> bool:
        try:
            with Redis.from_url(cluster.redis_url, socket_timeout=1) as client:
                return bool(client.ping())
        except RedisError:
            return False

    wait_until(answers, timeout, "a primary that answers")
