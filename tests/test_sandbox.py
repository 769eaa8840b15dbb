"""The sandbox forced for real: memory and time limits, the policy check, no network or root."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from PIL import Image
from redis import Redis

from renderq.jobs import Job
from renderq.settings import Settings
from tests.conftest import Processes, wait_until
from worker.sandbox import Sandbox


def solid_png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.fixture
def limited(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a front and a worker with tight render limits; returns the front's URL."""
    procs = Processes(redis_url, tmp_path)

    def start(**limits: str) -> str:
        base = procs.start_front()
        worker = procs.start("worker", **limits)
        start.worker_pid = worker.pid  # type: ignore[attr-defined]
        return base

    yield start
    procs.stop_all()


def run_job(base: str, response: httpx.Response) -> tuple[int, str]:
    assert response.status_code == 202, response.text
    final = httpx.get(f"{base}{response.headers['location']}?wait=25", timeout=30)
    if final.status_code == 200:
        return 200, "done"
    return final.status_code, final.json()["error"]["code"]


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_render_over_its_memory_limit_fails_and_the_worker_lives_on(
    limited: Callable[..., str], engine: str
) -> None:
    base = limited(RENDERQ_RENDER_MEMORY_MB="220")
    ops = json.dumps([{"op": "resize", "width": 7000, "height": 7000, "fit": "fill"}])
    files = {"file": ("big.png", solid_png((3000, 3000)), "image/png")}
    response = httpx.post(f"{base}/jobs", files=files, data={"ops": ops, "engine": engine})
    assert run_job(base, response) == (422, "render_memory")
    after = httpx.post(f"{base}/jobs", json={"text": "after", "engine": engine})
    assert run_job(base, after) == (200, "done")


def test_render_over_its_time_limit_fails_and_the_worker_lives_on(
    limited: Callable[..., str],
) -> None:
    base = limited(RENDERQ_RENDER_TIMEOUT="1")
    ops = json.dumps([{"op": "blur", "radius": 50}, {"op": "blur", "radius": 50}])
    files = {"file": ("big.png", solid_png((3000, 3000)), "image/png")}
    response = httpx.post(f"{base}/jobs", files=files, data={"ops": ops, "engine": "imagemagick"})
    assert run_job(base, response) == (422, "render_timeout")
    after = httpx.post(f"{base}/jobs", json={"text": "after"})
    assert run_job(base, after) == (200, "done")


def test_worker_refuses_to_start_without_its_policy(redis_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "no-policy"
    empty.mkdir()
    procs = Processes(redis_url, tmp_path)
    try:
        worker = procs.start("worker", RENDERQ_IMAGEMAGICK_POLICY_DIR=str(empty))
        assert worker.wait(20) == 2
        log = worker.log.read_text()  # type: ignore[attr-defined]
        assert "worker_refused_to_start" in log
        assert "policy.xml is not in force" in log
    finally:
        procs.stop_all()


def test_sandbox_children_have_no_network_and_no_root(redis_url: str, tmp_path: Path) -> None:
    procs = Processes(redis_url, tmp_path)
    try:
        worker = procs.start("worker")
        log_file: Path = worker.log  # type: ignore[attr-defined]
        wait_until(lambda: "worker_started" in log_file.read_text(), what="the worker to start")
        started = next(
            json.loads(line)
            for line in log_file.read_text().splitlines()
            if "worker_started" in line
        )
        assert started["sandbox_network"] == "isolated"
        assert started["sandbox_user"] != "root"
    finally:
        procs.stop_all()


def test_root_worker_without_its_user_refuses_to_start(redis_url: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a worker started as root drops privileges")
    procs = Processes(redis_url, tmp_path)
    try:
        worker = procs.start("worker", RENDERQ_WORKER_USER="no-such-user-renderq")
        assert worker.wait(20) == 2
        assert "does not exist" in worker.log.read_text()  # type: ignore[attr-defined]
    finally:
        procs.stop_all()


def test_orphaned_sandbox_dirs_are_removed(settings: Settings) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = Path(tempfile.gettempdir()) / f"renderq-sandbox-{dead.pid}-test"
    (orphan / "job").mkdir(parents=True)
    sandbox = Sandbox(settings)
    try:
        sandbox.start()
        assert not orphan.exists()
    finally:
        sandbox.close()


def test_jobs_leave_nothing_in_the_private_temp_dir(settings: Settings) -> None:
    sandbox = Sandbox(settings)
    job = Job(id="B" * 22, kind="text", engine="imagemagick", format="png", request={"text": "t"})
    try:
        sandbox.render(job, None)
        child = sandbox._child
        assert child is not None
        [private] = os.listdir(child.temp_root)
        (Path(child.temp_root) / private / "left-by-a-job").write_text("x")
        sandbox.render(job, None)
        assert os.listdir(Path(child.temp_root) / private) == [], "emptied after each job"
    finally:
        sandbox.close()
    assert not Path(child.temp_root).exists(), "the child's dir goes with the child"


def test_crashed_render_fails_its_job_and_the_worker_lives_on(
    limited: Callable[..., str], redis_url: str
) -> None:
    base = limited()
    ops = json.dumps([{"op": "blur", "radius": 30}])
    files = {"file": ("big.png", solid_png((2000, 2000)), "image/png")}
    response = httpx.post(f"{base}/jobs", files=files, data={"ops": ops, "engine": "imagemagick"})
    assert response.status_code == 202
    job_key = f"renderq:job:{response.json()['id']}"
    with Redis.from_url(redis_url) as redis:
        wait_until(lambda: redis.hget(job_key, "status") == b"running", what="the render")
    # The render child crashes as a decoder bug would make it: a real SIGSEGV.
    worker_pid: int = limited.worker_pid  # type: ignore[attr-defined]
    [child] = sandbox_children(worker_pid)
    os.kill(child, signal.SIGSEGV)
    assert run_job(base, response) == (500, "render_crashed")
    after = httpx.post(f"{base}/jobs", json={"text": "after"})
    assert run_job(base, after) == (200, "done")
    assert child not in sandbox_children(worker_pid), "a crashed child is replaced"


def sandbox_children(worker_pid: int) -> list[int]:
    """Pids of a worker's sandbox children."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text()
    return [int(pid) for pid in children.split()]
