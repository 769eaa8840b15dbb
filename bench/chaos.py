"""Chaos for the soak test: a cluster whose Redis persists like the deployment's and can be
restarted in place, and a thread that keeps killing workers and restarting Redis.

Workers are killed with SIGKILL, as the OOM killer would: nothing of theirs gets to run, so
their jobs must come back through the visibility timeout. Redis gets SIGTERM, as a service
manager would send, and must come back from its append-only file with everything it
acknowledged.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.cluster import Cluster, Process, _redis_answers, _wait_for, free_port

# Generous: Redis fsyncs its AOF on the way out, which is quick for the soak's data.
REDIS_STOP_TIMEOUT = 30.0


class ChaosCluster(Cluster):
    """A `Cluster` whose Redis runs with AOF on a fixed port and data dir, so it can be
    stopped and started again with its data, and whose workers can be killed and replaced.

    Each worker gets a log file of its own (`worker-<n>.log`, numbered in start order), so the
    log of a killed worker stays for the checks after it is gone.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        super().__init__(log_dir, env)
        self.data_dir = log_dir / "redis-data"
        self._port = free_port()  # chosen once: a restarted Redis must be found where it was
        self._redis: Process | None = None
        self._workers_started = 0
        self._log_names: dict[int, str] = {}  # worker pid: its log file

    def start_redis(self) -> None:
        """Start redis-server as deployed (AOF, fsync every second, no RDB snapshots) and wait
        until it answers, which is after it has reloaded its AOF."""
        self.data_dir.mkdir(exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self._port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.data_dir)]
        proc = self._spawn(args, "redis")
        self._services.insert(0, proc)  # first in the list: `close` stops it last
        self._redis = proc
        self.redis_url = f"redis://127.0.0.1:{self._port}/0"
        # A Redis still loading its AOF answers PING with LOADING, which counts as not ready.
        _wait_for(lambda: _redis_answers(self.redis_url), [proc], "redis-server to start")

    def restart_redis(self, down: float = 0.0) -> float:
        """SIGTERM Redis, wait for it to exit, leave it down `down` more seconds, start it
        again on the same port and dir; the seconds it was away. A Redis that ignores SIGTERM
        is an error, not something to kill."""
        old = self._redis
        if old is None:
            raise RuntimeError("Redis is not running")
        stopped_at = time.monotonic()
        old.send_signal(signal.SIGTERM)
        try:
            old.wait(REDIS_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Redis did not exit within {REDIS_STOP_TIMEOUT:.0f} s") from None
        self._services.remove(old)
        self._redis = None
        time.sleep(down)
        self.start_redis()
        return time.monotonic() - stopped_at

    def start_workers(self, count: int) -> None:
        """Start `count` workers and wait until each reads the stream, so the run starts with
        every worker ready."""
        for _ in range(count):
            self.start_worker()
        expected = len(self._workers)
        _wait_for(lambda: self._consumers() >= expected, self._workers, "the workers to start")

    def start_worker(self) -> None:
        """Start one worker under a new name, without waiting: a replacement joins when ready."""
        name = f"worker-{self._workers_started}"
        proc = self._spawn_module("worker", name)
        self._workers.append(proc)
        self._log_names[proc.pid] = f"{name}.log"
        self._workers_started += 1

    def kill_worker(self, rng: random.Random) -> str:
        """SIGKILL a random live worker (its sandbox child dies with it) and start another;
        the name of the killed one's log."""
        live = [proc for proc in self._workers if proc.poll() is None]
        victim = rng.choice(live) if live else None
        if victim is not None:
            victim.kill()
            victim.wait()
            self._workers.remove(victim)
        self.start_worker()
        return self._log_names.pop(victim.pid, "?") if victim else "none"

    def replace_exited_workers(self) -> int:
        """Start a replacement for every worker that exited by itself (none should: it is
        counted and reported), so the run keeps its number of workers."""
        exited = [proc for proc in self._workers if proc.poll() is not None]
        for proc in exited:
            self._workers.remove(proc)
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
