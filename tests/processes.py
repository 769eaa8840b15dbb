"""Real processes for the tests and the benchmark: a redis-server, the front, the workers.

renderq's processes run as `make run` runs them: from the read-only install in /opt/renderq
(`Settings.installed_python`), in `/`, each logging to a file of its own. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from redis import Redis
from redis.exceptions import RedisError

from renderq.settings import Settings

INSTALLED_PYTHON = Settings().installed_python
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "condition",
    processes: Iterable[Service | RedisServer] = (),
) -> None:
    """Poll `check` until it is true; fail after `timeout` seconds, or at once when one of
    `processes` has exited meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if any(process.process.poll() is not None for process in processes):
            raise AssertionError(f"gave up waiting for {what}: a process exited")
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def redis_answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=0.2) as client:
            return bool(client.ping())
    except RedisError:
        return False


def http_answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class RedisServer:
    """A redis-server on a loopback port, with its data in `directory`."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    arguments: list[str]
    password: str | None = None

    @classmethod
    def start(
        cls,
        directory: Path,
        password: str | None = None,
        aof: bool = False,
        port: int | None = None,
        replica_of: int | None = None,
    ) -> RedisServer:
        """Start one and wait until it answers. With `aof`, as a deployment runs it: every
        acknowledged write survives a restart (`restart`). With `replica_of`, a replica of
        the Redis on that port (with the same password)."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = port or free_port()
        arguments = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        arguments += ["--dir", str(directory), "--appendonly", "yes" if aof else "no"]
        if aof:
            arguments += ["--appendfsync", "everysec"]
        if password:
            arguments += ["--requirepass", password, "--masterauth", password]
        if replica_of:
            arguments += ["--replicaof", "127.0.0.1", str(replica_of)]
        server = cls(_start_redis(arguments, directory), port, directory, arguments, password)
        wait_until(lambda: redis_answers(server.url), what="redis-server to start")
        return server

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """Start it again, on the same port and data, after `stop` or a crash."""
        self.process = _start_redis(self.arguments, self.directory)
        wait_until(lambda: redis_answers(self.url), what="redis-server to restart")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): with AOF, everything acknowledged is on disk."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(STOP_TIMEOUT)


@dataclass
class Sentinels:
    """Redis Sentinels (Debian's `redis-sentinel`) watching one primary under `MASTER`."""

    MASTER = "renderq"
    processes: list[subprocess.Popen[bytes]]
    ports: list[int]
    password: str

    @classmethod
    def start(
        cls, directory: Path, primary: RedisServer, password: str, count: int = 3
    ) -> Sentinels:
        """Start `count` Sentinels that fail over after 1 s without an answer (quorum: a
        majority), and wait until they agree they could: they see each other, and a replica
        in sync."""
        binary = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
        ports = [free_port() for _ in range(count)]
        processes = []
        master = cls.MASTER
        settings = [
            f"sentinel monitor {master} 127.0.0.1 {primary.port} {count // 2 + 1}",
            f"sentinel down-after-milliseconds {master} 1000",
            f"sentinel failover-timeout {master} 5000",
            f"requirepass {password}",
            f"sentinel sentinel-pass {password}",
        ]
        if primary.password:
            settings.append(f"sentinel auth-pass {master} {primary.password}")
        for port in ports:
            config = directory / f"sentinel-{port}.conf"  # Sentinel rewrites it: its own
            lines = [f"port {port}", "bind 127.0.0.1", f"dir {directory}", *settings]
            config.write_text("\n".join(lines) + "\n")
            processes.append(_start_redis([binary, str(config)], directory))
        sentinels = cls(processes, ports, password)
        wait_until(sentinels.ready, 30, "the Sentinels to see each other and the replica")
        return sentinels

    @property
    def addresses(self) -> str:
        """As `REDIS_SENTINELS` wants them."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def primary_port(self) -> int | None:
        """The port of the primary according to the first Sentinel that answers."""
        for port in self.ports:
            try:
                with Redis(port=port, password=self.password, socket_timeout=0.5) as client:
                    _host, primary = client.sentinel_get_master_addr_by_name(self.MASTER)
                    return int(primary)
            except (RedisError, TypeError):
                continue
        return None

    def ready(self) -> bool:
        try:
            with Redis(port=self.ports[0], password=self.password, socket_timeout=0.5) as one:
                state: Any = one.sentinel_master(self.MASTER)
                replicas: Any = one.sentinel_slaves(self.MASTER)
        except RedisError:
            return False
        in_sync = [r for r in replicas if r.get("master-link-status") == "ok"]
        return int(state["num-other-sentinels"]) == len(self.ports) - 1 and bool(in_sync)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(STOP_TIMEOUT)


def _start_redis(arguments: list[str], directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(arguments, cwd=directory, stdout=subprocess.DEVNULL)


@dataclass
class Service:
    """One renderq process (`python -m service` or `python -m worker`) and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, event: str) -> list[dict[str, Any]]:
        """Every JSON log line of `event`."""
        found = []
        for line in self.log_text().splitlines():
            if f'"event": "{event}"' in line:
                found.append(json.loads(line))
        return found

    def wait_for_events(self, event: str, count: int = 1, timeout: float = 20.0) -> list[Any]:
        """Every line of `event`, once there are at least `count`. A worker logs a job's end
        just after ending it, so the front may already have answered for the job."""
        wait_until(lambda: len(self.events(event)) >= count, timeout, event, [self])
        return self.events(event)


@dataclass
class Processes:
    """renderq processes against one Redis, started with `env` and stopped together."""

    redis_url: str
    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    started: list[Service] = field(default_factory=list)

    def start(
        self, module: str, name: str | None = None, args: Sequence[str] = (), **env: str
    ) -> Service:
        """Start `python -m module args...`; `env` adds settings to the environment."""
        name = name or f"{module}-{len(self.started)}"
        log = self.log_dir / f"{name}.log"
        full_env = {**os.environ, "REDIS_URL": self.redis_url, **self.env, **env}
        with log.open("ab") as output:
            process = subprocess.Popen(
                [INSTALLED_PYTHON, "-m", module, *args],
                cwd="/",
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only the caller
            )
        service = Service(name, process, log)
        self.started.append(service)
        return service

    def start_front(self, **env: str) -> str:
        """Start the front and return its base URL once `/healthz` answers."""
        port = free_port()
        front = self.start("service", PORT=str(port), **env)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_answers(f"{base}/healthz"), 20, "the front to start", [front])
        return base

    def wait_for_log(self, service: Service, event: str, timeout: float = 20.0) -> None:
        service.wait_for_events(event, timeout=timeout)

    def stop_all(self) -> None:
        """SIGTERM first, so workers finish and close their sandboxes; SIGKILL what lingers.

        A stopped process (SIGSTOP) is resumed first, or it would hold its SIGTERM.
        """
        running = [service for service in self.started if service.process.poll() is None]
        for service in running:
            service.process.send_signal(signal.SIGCONT)
            service.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for service in running:
            try:
                service.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
