"""The shapes renderq runs in: one machine or several, a Redis over TLS with an ACL user.

Several machines are several fronts and several workers with unique names on one Redis;
nothing in renderq keeps state outside Redis, so any front answers for any job.
"""

from __future__ import annotations

import platform
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError
from supervisor.options import ServerOptions

from tests.processes import Processes, free_port, wait_until

ROOT = Path(__file__).parent.parent
SUPERVISOR_ENV = {
    "RENDERQ_WORKERS": "3",
    "RENDERQ_LOCAL_REDIS": "false",
    "RENDERQ_REDIS_USER": "renderq-redis",
    "RENDERQ_WORKER_USER": "renderq",
}


def programs(config: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    """The processes a supervisord configuration starts, and the environment each gets."""
    for name, value in SUPERVISOR_ENV.items():
        monkeypatch.setenv(name, value)
    options = ServerOptions()
    options.configfile = str(ROOT / "deploy" / config)
    options.process_config(do_usage=False)
    assert options.parse_warnings == []
    return {
        process.name: dict(process.environment or {})
        for group in options.process_group_configs
        for process in group.process_configs
    }


def test_each_host_runs_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    host = platform.node()
    workers = {f"worker-{n}": {"RENDERQ_WORKER_NAME": f"{host}:worker-{n}"} for n in range(3)}
    assert programs("supervisord.conf", monkeypatch) == {"redis": {}, "front": {}, **workers}
    assert programs("front-host.conf", monkeypatch) == {"front": {}}
    assert programs("worker-host.conf", monkeypatch) == workers


def test_fronts_and_workers_on_several_hosts_share_one_redis(
    processes: Processes, redis: Redis
) -> None:
    """Two fronts and two workers named as two hosts' supervisord names them: a job queued
    through one front is polled, found again by its Idempotency-Key and listed through the
    other, and each worker holds its own place in the consumer group."""
    fronts = [processes.start_front() for _ in range(2)]
    names = ["host-a:worker-0", "host-b:worker-0"]
    for name in names:
        processes.start("worker", RENDERQ_WORKER_NAME=name)
    key = {"Idempotency-Key": "several-hosts"}
    queued = httpx.post(f"{fronts[0]}/jobs", json={"text": "one"}, headers=key)
    again = httpx.post(f"{fronts[1]}/jobs", json={"text": "one"}, headers=key)
    assert queued.status_code == again.status_code == 202
    assert queued.json()["id"] == again.json()["id"]
    done = httpx.get(f"{fronts[1]}{queued.headers['location']}?wait=20", timeout=30)
    assert done.status_code == 200
    assert done.headers["content-type"] == "image/png"
    for base in fronts:
        wait_until(lambda: listed_workers(base) == names, 10, "both workers on /healthz")  # noqa: B023
    many = [httpx.post(f"{fronts[n % 2]}/jobs", json={"text": f"job {n}"}) for n in range(20)]
    for response in many:
        location = response.headers["location"]
        assert httpx.get(f"{fronts[1]}{location}?wait=20", timeout=30).status_code == 200
    group = {c["name"].decode() for c in redis.xinfo_consumers("renderq:stream", "renderq:workers")}
    assert group == set(names)


def listed_workers(base: str) -> list[str]:
    """The consumer names of the workers the front's `/healthz` lists."""
    workers = httpx.get(f"{base}/healthz", timeout=5).json()["workers"]
    return sorted(str(worker["consumer"]) for worker in workers)


def openssl(*arguments: str | Path) -> None:
    binary = shutil.which("openssl") or "/usr/bin/openssl"
    subprocess.run([binary, *map(str, arguments)], check=True, capture_output=True)


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA, and a certificate it signed for 127.0.0.1: (CA, cert, key)."""
    ca_key, ca, key, request, cert = (directory / f"tls-{n}" for n in "abcde")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", ca_key,
            "-out", ca, "-subj", "/CN=test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    names = directory / "tls-names.cnf"
    names.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "1", "-out", cert, "-extfile", names)  # fmt: skip
    return ca, cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server that speaks TLS only, with the default user off and an ACL user
    limited to renderq's keys and channels; yields its rediss:// URL and the CA file."""
    ca, cert, key = make_certificate(tmp_path)
    password = secrets.token_urlsafe(16)
    acl = tmp_path / "users.acl"
    acl.write_text(
        "user default off\n"
        f"user renderq on >{password} ~renderq:* &renderq:* +@all -@dangerous +info\n"
    )
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    tls = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    rest = ["--aclfile", str(acl), "--save", "", "--dir", str(tmp_path)]
    server = subprocess.Popen(
        [binary, "--port", "0", "--bind", "127.0.0.1", *tls, *rest], stdout=subprocess.DEVNULL
    )
    url = f"rediss://renderq:{password}@127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            with Redis.from_url(url, ssl_ca_certs=str(ca), socket_timeout=0.5) as client:
                return bool(client.ping())
        except RedisError:
            return False

    try:
        wait_until(answers, 10, "redis-server with TLS to start")
        yield url, ca
    finally:
        server.terminate()
        server.wait(10)


def test_redis_over_tls_with_an_acl_user(tls_redis: tuple[str, Path], tmp_path: Path) -> None:
    """The front and a worker reach Redis over TLS, checking its certificate against the
    given CA (readable by root only: the worker reads it before dropping privileges), as an
    ACL user that may touch only renderq's keys and no dangerous command."""
    url, ca = tls_redis
    env = {"RENDERQ_REDIS_TLS_CA_FILE": str(ca), "RENDERQ_WORKER_BLOCK_MS": "100"}
    procs = Processes(url, tmp_path, env)
    try:
        base = procs.start_front()
        worker = procs.start("worker")
        queued = httpx.post(f"{base}/jobs", json={"text": "over TLS"})
        assert queued.status_code == 202
        done = httpx.get(f"{base}{queued.headers['location']}?wait=20", timeout=30)
        assert done.status_code == 200
        assert len(worker.wait_for_events("job_done")) == 1
        assert httpx.get(f"{base}/healthz").json()["workers"] != []
    finally:
        procs.stop_all()
