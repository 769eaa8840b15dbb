"""Start and stop the processes under measurement: a private Redis, the front and workers.

Every child runs in its own session, so a Ctrl-C in the terminal reaches only the benchmark,
which then stops the children in order instead of leaving them half-killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
from redis import Redis
from redis.exceptions import RedisError

from renderq.settings import Settings

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Short blocking reads let the workers notice SIGTERM quickly; a new entry wakes them anyway.
WORKER_BLOCK_MS = "500"

Process = subprocess.Popen[bytes]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """The benchmark's own Redis, front and workers; logs go to files under `log_dir`.

    `env` is added to the environment of the front and of every worker (settings such as
    `RENDERQ_RESULT_TTL`), after the defaults and before what a single call passes.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.redis_url = ""
        self.base_url = ""
        self._services: list[Process] = []
        self._workers: list[Process] = []

    def start_redis(self) -> None:
        """Start redis-server without persistence, so the measurement never waits on disk."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.log_dir)]
        proc = self._spawn(args, "redis")
        self._services.append(proc)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        _wait_for(lambda: _redis_answers(self.redis_url), [proc], "redis-server to start")

    def start_front(self) -> None:
        """Start `python -m service` and wait until /healthz answers 200."""
        port = free_port()
        proc = self._spawn_module("service", "front", PORT=str(port))
        self._services.append(proc)
        self.base_url = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _answers(f"{self.base_url}/healthz"), [proc], "the front to start")

    def start_workers(self, count: int) -> None:
        """Start `count` workers and wait until each reads the stream, so none is measured
        while still importing."""
        for index in range(count):
            self._workers.append(self._spawn_module("worker", f"worker-{index}"))
        expected = len(self._workers)
        _wait_for(lambda: self._consumers() >= expected, self._workers, "the workers to start")

    def pause_workers(self) -> None:
        """SIGSTOP every worker once each waits in its read of the stream, so jobs queued from
        now on pile up and none is frozen half-way through a job."""
        expected = len(self._workers)
        _wait_for(lambda: self._consumers() >= expected, self._workers, "the workers to be idle")
        self._signal_workers(signal.SIGSTOP)

    def resume_workers(self) -> None:
        """SIGCONT every worker: each finds its read answered and takes the queued jobs.

        Harmless on workers that are not stopped, so cleanup can call it unconditionally.
        """
        self._signal_workers(signal.SIGCONT)

    def flush(self) -> None:
        """Empty Redis, so jobs of one phase are not left for the workers of the next."""
        with Redis.from_url(self.redis_url) as client:
            client.flushall()

    def close(self) -> None:
        """Stop workers first (they would complain about a vanished Redis), then the rest.

        Workers are resumed first: a stopped one would hold its SIGTERM until killed.
        """
        self.resume_workers()
        _stop(self._workers)
        _stop(list(reversed(self._services)))
        self._workers.clear()
        self._services.clear()

    def _signal_workers(self, signum: signal.Signals) -> None:
        """Send `signum` to every worker; Popen skips one that has exited, so no stray pid."""
        for proc in self._workers:
            proc.send_signal(signum)

    def _consumers(self) -> int:
        """Clients whose last command was a read of the stream: workers in their loop.

        (A consumer group lists a consumer only once it was handed an entry, so it cannot tell.)
        """
        try:
            with Redis.from_url(self.redis_url) as client:
                return sum(1 for info in client.client_list() if info["cmd"] == "xreadgroup")
        except RedisError:
            return 0

    def _spawn_module(self, module: str, name: str, **env: str) -> Process:
        extra = {
            "REDIS_URL": self.redis_url,
            "RENDERQ_WORKER_BLOCK_MS": WORKER_BLOCK_MS,
            **self.env,
            **env,
        }
        # The code `make run` runs: renderq as set-up installed it, readable by every user.
        return self._spawn([Settings().installed_python, "-m", module], name, extra)

    def _spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> Process:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as stderr:
            return subprocess.Popen(
                args,
                cwd="/",
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """Redis and the front, started; everything stopped on the way out, error or not.

    The logs are removed after a clean run and kept (their folder is named) after a failure.
    """
    log_dir = Path(tempfile.mkdtemp(prefix="renderq-bench-"))
    cluster = Cluster(log_dir)
    try:
        cluster.start_redis()
        cluster.start_front()
        yield cluster
    except BaseException:
        print(f"bench: process logs kept in {log_dir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    finally:
        cluster.close()


def _stop(procs: list[Process]) -> None:
    """SIGTERM every process, give them `STOP_TIMEOUT` seconds together, then SIGKILL."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(check: Callable[[], bool], procs: list[Process], what: str) -> None:
    """Poll `check`; fail early if one of `procs` died, or after `START_TIMEOUT` seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError(f"gave up waiting for {what}: a process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _redis_answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=0.2) as client:
            return bool(client.ping())
    except RedisError:
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
