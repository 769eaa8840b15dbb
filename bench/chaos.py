"""Chaos for the soak test: a cluster whose Redis persists like the deployment's and can be
restarted in place, and a thread that keeps killing workers and restarting Redis.

Workers are killed with SIGKILL, as the OOM killer would: nothing of theirs gets to run, so
their jobs must come back through the visibility timeout. Redis gets SIGTERM, as a service
manager would send, and must come back from its append-only file with everything it
acknowledged.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.cluster import Cluster

# Generous: Redis fsyncs its AOF on the way out, which is quick for the soak's data.
REDIS_STOP_TIMEOUT = 30.0


class ChaosCluster(Cluster):
    """A `Cluster` whose Redis runs with AOF, so it can be stopped and started again with its
    data, and whose workers can be killed and replaced.

    Each worker has a log file of its own (`worker-<n>.log`, numbered in start order), so the
    log of a killed worker stays for the checks after it is gone.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        super().__init__(log_dir, env)
        self._gone: set[int] = set()  # pids of workers killed or replaced already

    def start_redis(self, aof: bool = True) -> None:
        """Start redis-server as deployed: AOF, fsync every second, no RDB snapshots."""
        super().start_redis(aof=aof)

    def restart_redis(self, down: float = 0.0) -> float:
        """SIGTERM Redis, wait for it to exit, leave it down `down` more seconds, start it
        again on the same port and dir; the seconds it was away."""
        if self.redis is None:
            raise RuntimeError("Redis is not running")
        stopped_at = time.monotonic()
        self.redis.stop()
        time.sleep(down)
        # A Redis still loading its AOF answers PING with LOADING, which counts as not ready.
        self.redis.restart()
        return time.monotonic() - stopped_at

    def kill_worker(self, rng: random.Random) -> str:
        """SIGKILL a random live worker (its sandbox dies with it) and start another; the
        name of the killed one's log."""
        live = [worker for worker in self.workers if worker.process.poll() is None]
        victim = rng.choice(live) if live else None
        if victim is not None:
            victim.process.kill()
            victim.process.wait()
            self._gone.add(victim.pid)
        self.start_worker()
        return victim.log.name if victim else "none"

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


@dataclass
class ChaosCounts:
    """What the chaos did, and what it found: workers that exited without being killed.

    `actions` holds (wall-clock time, what) of each action, so a job that misbehaved can be
    set beside the kill or restart nearest to it.
    """

    worker_kills: int = 0
    redis_restarts: int = 0
    worker_exits: int = 0
    redis_away_seconds: list[float] = field(default_factory=list)
    actions: list[tuple[float, str]] = field(default_factory=list)


class Chaos:
    """Every 1.5 to 4 s (drawn from a seeded `random.Random`, so a run can be repeated), either
    kill a worker and start a replacement (most often) or restart Redis, until `stop`.

    Redis stays down for up to `redis_down` seconds: long enough, at times, to outlast the
    front's own retries (so clients see 503 and retry under their Idempotency-Key) and to
    send the workers into their backoff.

    Runs in a thread of its own, since the cluster's calls block; the only caller of the
    cluster's process methods while it runs, so no lock is needed.
    """

    def __init__(
        self,
        cluster: ChaosCluster,
        rng: random.Random,
        redis_share: float = 0.2,
        pause: tuple[float, float] = (1.5, 4.0),
        redis_down: float = 2.0,
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.redis_share = redis_share
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
        if self.rng.random() < self.redis_share:
            down = self.rng.uniform(0.0, self.redis_down)
            self.counts.redis_away_seconds.append(self.cluster.restart_redis(down))
            self.counts.redis_restarts += 1
            self.counts.actions.append((at, "Redis SIGTERM"))
        else:
            victim = self.cluster.kill_worker(self.rng)
            self.counts.worker_kills += 1
            self.counts.actions.append((at, f"SIGKILL of {victim}"))
