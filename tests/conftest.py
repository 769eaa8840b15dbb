"""Fixtures: a real redis-server on a free port, settings pointing at it, the app, workers.

The front and workers the tests start run renderq as set-up installed it in /opt/renderq,
the way `make run` does, and so do the sandboxes of in-process workers: the session stops
at once if that copy is not the code under test (run `make test`, which reinstalls it).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from starlette.testclient import TestClient

from renderq.job_tags import JobTags
from renderq.keys import Keys
from renderq.settings import Settings
from service.app import create_app
from tests.processes import Processes, RedisServer
from worker.loop import Worker
from worker.sandbox.policy import policy_xml

ROOT = Path(__file__).resolve().parent.parent


def _use_renderq_policy() -> None:
    """Renders the tests make in this process (engine tests) use renderq's ImageMagick policy
    too; ImageMagick reads it once per process, before the first render."""
    directory = Path(tempfile.mkdtemp(prefix="renderq-test-policy-"))
    (directory / "policy.xml").write_text(policy_xml(Settings()))
    os.environ["MAGICK_CONFIGURE_PATH"] = str(directory)


def _check_installed_copy() -> None:
    spec = importlib.util.spec_from_file_location("source_digest", ROOT / "deploy/source_digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    installed = Path(Settings().install_dir) / "SOURCE_DIGEST"
    wanted = module.source_digest(ROOT)
    if not installed.exists() or installed.read_text().strip() != wanted:
        pytest.exit(
            f"the copy of renderq in {installed.parent} is not the code under test: "
            "run `make test` (or deploy/setup.sh), which installs it",
            returncode=2,
        )


_use_renderq_policy()


def pytest_sessionstart(session: pytest.Session) -> None:
    _check_installed_copy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server with a password for the whole test session; yields its URL
    (with the password: `redis_password_file` has a test of its own)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it")
    directory = Path(tempfile.mkdtemp(prefix="renderq-redis-"))
    server = RedisServer.start(directory, password=secrets.token_urlsafe(16))
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    Redis.from_url(redis_server).flushall()
    return redis_server


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


def run_to_end(
    argv: list[str], redis_url: str, **options: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` (an entry point of the installed renderq, or a command around one) until it
    exits, with the test environment; its output is kept. `env` adds to the environment."""
    env = {**os.environ, **environ_for(redis_url), **options.pop("env", {})}
    return subprocess.run(
        argv, env=env, cwd="/", capture_output=True, timeout=60, check=False, **options
    )


def job_tag(redis: Redis, job_id: str) -> str:
    """How the logs name `job_id` (never in clear): its tag under the deployment's key."""
    key = redis.get(Keys().job_tag_key)
    assert isinstance(key, bytes), "no process has created the tag key yet"
    return JobTags(key).tag(job_id)


def queued_anything(redis: Redis) -> bool:
    """Whether a job, an upload or a stream entry exists: what a refused request must not
    leave. (The deployment's own keys, such as the counters and the tag key, may.)"""
    keys = Keys()
    found = [redis.keys(keys.job("*")), redis.keys(keys.input("*")), redis.xlen(keys.stream)]
    return any(found)


def environ_for(redis_url: str, **overrides: str) -> dict[str, str]:
    """Environment for settings and for the processes the tests start."""
    env = {"REDIS_URL": redis_url, "RENDERQ_WORKER_BLOCK_MS": "100"}
    env.update(overrides)
    return env


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env(environ_for(redis_url))


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def run_worker(settings: Settings, redis: Redis) -> Callable[..., Worker]:
    """Run an in-process worker in burst mode: it takes every queued job, then returns."""

    def run(worker_settings: Settings | None = None) -> Worker:
        worker = Worker(worker_settings or settings, redis, consumer="test-worker")
        worker.run(burst=True)
        return worker

    return run


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, with the deployment's persistence (AOF), that it may
    restart, freeze or kill."""
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer.start(data, aof=True)
    yield server
    server.stop()


@pytest.fixture
def processes(redis_url: str, tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(redis_url, tmp_path, environ_for(redis_url))
    yield procs
    procs.stop_all()
