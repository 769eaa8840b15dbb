"""The processes under measurement: a private Redis, the front and workers.

Built on the same harness as the tests (`tests.processes`): renderq runs from its read-only
install as `make run` runs it, every process in its own session, so a Ctrl-C in the terminal
reaches only the benchmark, which then stops them in order.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from redis import Redis
from redis.exceptions import RedisError

from tests.processes import Processes, RedisServer, Service, wait_until

START_TIMEOUT = 20.0
# Short blocking reads let the workers notice SIGTERM quickly; a new entry wakes them anyway.
WORKER_BLOCK_MS = "500"


class Cluster:
    """The benchmark's own Redis, front and workers; logs go to files under `log_dir`.

    `env` is added to the environment of the front and of every worker (settings such as
    `RENDERQ_RESULT_TTL`).
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = {"RENDERQ_WORKER_BLOCK_MS": WORKER_BLOCK_MS, **(env or {})}
        self.redis: RedisServer | None = None
        self.processes: Processes | None = None
        self.base_url = ""
        self.workers: list[Service] = []
        self.front: Service | None = None

    @property
    def redis_url(self) -> str:
        return self.redis.url if self.redis else ""

    def start_redis(self, aof: bool = False) -> None:
        """Start redis-server; without persistence unless `aof`, so the measurement never
        waits on disk."""
        data = self.log_dir / "redis-data"
        data.mkdir(exist_ok=True)
        self.redis = RedisServer.start(data, aof=aof)
        self.processes = Processes(self.redis.url, self.log_dir, self.env)

    def start_front(self) -> None:
        """Start `python -m service` and wait until /healthz answers 200."""
        self.base_url = self._processes().start_front(RENDERQ_LOG_LEVEL="WARNING")
        self.front = self._processes().started[-1]  # the process start_front just started

    def start_workers(self, count: int) -> None:
        """Start `count` workers and wait until each reads the stream, so none is measured
        while still starting."""
        for _ in range(count):
            self.start_worker()
        expected = len(self.workers)
        what = "the workers to start"
        wait_until(lambda: self._consumers() >= expected, START_TIMEOUT, what, self.workers)

    def start_worker(self, name: str | None = None) -> Service:
        """Start one worker, under a new name unless `name` is given (a restart, as supervisord
        does one), without waiting: a replacement joins when ready. The name is both its
        consumer name and its log's."""
        name = name or f"worker-{len(self.workers)}"
        worker = self._processes().start("worker", name=name, RENDERQ_WORKER_NAME=name)
        self.workers.append(worker)
        return worker

    def pause_workers(self) -> None:
        """SIGSTOP every worker once each waits in its read of the stream, so jobs queued from
        now on pile up and none is frozen half-way through a job."""
        expected = len(self.workers)
        what = "the workers to be idle"
        wait_until(lambda: self._consumers() >= expected, START_TIMEOUT, what, self.workers)
        self._signal_workers(signal.SIGSTOP)

    def resume_workers(self) -> None:
        """SIGCONT every worker: each finds its read answered and takes the queued jobs."""
        self._signal_workers(signal.SIGCONT)

    def flush(self) -> None:
        """Empty Redis, so jobs of one phase are not left for the workers of the next."""
        with Redis.from_url(self.redis_url) as client:
            client.flushall()

    def close(self) -> None:
        """Stop the workers and the front (they would complain about a vanished Redis), then
        Redis."""
        if self.processes is not None:
            self.processes.stop_all()
        if self.redis is not None:
            self.redis.stop()

    def _processes(self) -> Processes:
        if self.processes is None:
            raise RuntimeError("start Redis first")
        return self.processes

    def _signal_workers(self, signum: signal.Signals) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.send_signal(signum)

    def _consumers(self) -> int:
        """Clients whose last command was a wait for work (the wake stream read, see
        `worker.queue.wait_for_work`): workers in their loop.

        (A consumer group lists a consumer only once it was handed an entry, so it cannot tell.)
        """
        try:
            with Redis.from_url(self.redis_url) as client:
                return sum(1 for info in client.client_list() if info["cmd"] == "xread")
        except RedisError:
            return 0


C = TypeVar("C", bound=Cluster)


def new_log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="renderq-bench-"))


@contextmanager
def running(cluster: C) -> Iterator[C]:
    """`cluster` with its Redis and front started; everything stopped on the way out, error
    or not. The logs are removed after a clean run and kept (their folder is named) after a
    failure."""
    try:
        cluster.start_redis()
        cluster.start_front()
        yield cluster
    except BaseException:
        print(f"bench: process logs kept in {cluster.log_dir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(cluster.log_dir, ignore_errors=True)
    finally:
        cluster.close()


def running_cluster() -> AbstractContextManager[Cluster]:
    """A plain `Cluster`, running (see `running`)."""
    return running(Cluster(new_log_dir()))
