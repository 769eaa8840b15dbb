"""The sandbox forced for real: limits, crashes, fresh children, failing closed, the policy."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from PIL import Image
from redis import Redis

from renderq.jobs import Job, new_job_id
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from tests.conftest import run_to_end
from tests.processes import INSTALLED_PYTHON, Processes, wait_until
from worker.sandbox import Sandbox
from worker.sandbox.policy import LIST_LENGTH, policy_xml


def solid_png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(out, "PNG", compress_level=1)
    return out.getvalue()


@dataclass
class Limited:
    """A front and a worker with render limits of the test's choosing."""

    processes: Processes
    base: str = ""
    worker_pid: int = 0

    def start(self, **limits: str) -> str:
        """Start both; the front's URL."""
        self.base = self.processes.start_front()
        worker = self.processes.start("worker", **limits)
        self.processes.wait_for_log(worker, "worker_started")
        self.worker_pid = worker.pid
        return self.base


@pytest.fixture
def limited(processes: Processes) -> Limited:
    return Limited(processes)


def run_job(base: str, response: httpx.Response) -> tuple[int, str]:
    assert response.status_code == 202, response.text
    final = httpx.get(f"{base}{response.headers['location']}?wait=25", timeout=30)
    if final.status_code == 200:
        return 200, "done"
    return final.status_code, final.json()["error"]["code"]


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_render_over_its_memory_limit_fails_and_the_worker_lives_on(
    limited: Limited, engine: str
) -> None:
    base = limited.start(RENDERQ_RENDER_MEMORY_MB="220")
    ops = json.dumps([{"op": "resize", "width": 7000, "height": 7000, "fit": "fill"}])
    files = {"file": ("big.png", solid_png((3000, 3000)), "image/png")}
    response = httpx.post(f"{base}/jobs", files=files, data={"ops": ops, "engine": engine})
    assert run_job(base, response) == (422, "render_memory")
    after = httpx.post(f"{base}/jobs", json={"text": "after", "engine": engine})
    assert run_job(base, after) == (200, "done")


def test_render_over_its_time_limit_fails_and_the_worker_lives_on(
    limited: Limited,
) -> None:
    base = limited.start(RENDERQ_RENDER_TIMEOUT="1")
    ops = json.dumps([{"op": "blur", "radius": 50}, {"op": "blur", "radius": 50}])
    files = {"file": ("big.png", solid_png((3000, 3000)), "image/png")}
    response = httpx.post(f"{base}/jobs", files=files, data={"ops": ops, "engine": "imagemagick"})
    assert run_job(base, response) == (422, "render_timeout")
    after = httpx.post(f"{base}/jobs", json={"text": "after"})
    assert run_job(base, after) == (200, "done")


def sandbox_children(worker_pid: int) -> list[int]:
    """Pids of the render children under a worker: forks of the zygote (same command line,
    bubblewrap's processes excluded), whose parent is the zygote."""
    zygote_forks = [
        pid
        for pid in _descendants(worker_pid)
        if _cmdline(pid).startswith(INSTALLED_PYTHON.encode())
        and b"sandbox.zygote" in _cmdline(pid)
    ]
    return [pid for pid in zygote_forks if _parent(pid) in zygote_forks]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [
        int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()
    ]


def _descendants(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        found += [child, *_descendants(child)]
    return found


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_crashed_render_fails_its_job_and_the_worker_lives_on(
    limited: Limited, redis_url: str
) -> None:
    base = limited.start()
    ops = json.dumps([{"op": "blur", "radius": 30}])
    files = {"file": ("big.png", solid_png((2000, 2000)), "image/png")}
    response = httpx.post(f"{base}/jobs", files=files, data={"ops": ops, "engine": "imagemagick"})
    assert response.status_code == 202
    job_key = f"renderq:job:{response.json()['id']}"
    with Redis.from_url(redis_url) as redis:
        wait_until(lambda: redis.hget(job_key, "status") == b"running", what="the render")
    time.sleep(0.3)
    # The render child crashes as a decoder bug would make it: a real SIGSEGV, sent to the
    # child that is using the CPU (the other is the idle text child).
    worker_pid = limited.worker_pid
    busy = max(sandbox_children(worker_pid), key=_cpu_ticks)
    os.kill(busy, signal.SIGSEGV)
    assert run_job(base, response) == (500, "render_crashed")
    after = httpx.post(f"{base}/jobs", json={"text": "after"})
    assert run_job(base, after) == (200, "done")
    assert busy not in sandbox_children(worker_pid), "a crashed child is replaced"


def text_job() -> Job:
    return Job(
        id=new_job_id(), kind=JobKind.TEXT, engine="pillow", format="png", request={"text": "t"}
    )


def image_job() -> Job:
    request = {"ops": [{"op": "resize", "width": 8}], "engine": "imagemagick"}
    return Job(
        id=new_job_id(), kind=JobKind.IMAGE, engine="imagemagick", format="png", request=request
    )


def test_every_image_job_gets_a_fresh_child_and_text_jobs_share_one(settings: Settings) -> None:
    box = Sandbox(settings)
    box.start()
    try:
        seen_text, seen_image = set(), set()
        for _ in range(3):
            box.render(text_job())
            seen_text.add(box._children["text"].id)
            box.render(image_job(), solid_png((32, 32)))
            seen_image.add(box._take("image").id)
        assert len(seen_text) == 1, "the text child renders many text jobs"
        assert len(seen_image) == 3, "each image job has a child of its own"
    finally:
        box.close()


def test_a_worker_started_as_root_reports_every_layer(
    redis_url: str, tmp_path: Path, processes: Processes
) -> None:
    base = processes.start_front()
    worker = processes.start("worker")
    processes.wait_for_log(worker, "worker_started")
    [started] = worker.events("worker_started")
    assert started["sandbox_weakened"] == []
    assert set(started["sandbox"].values()) == {"ok"}
    assert {"identity", "namespaces", "seccomp", "child_private_tmp"} <= set(started["sandbox"])
    health = httpx.get(f"{base}/healthz").json()
    assert health["sandbox"] == "isolated"
    assert [report["sandbox"] for report in health["workers"]] == [started["sandbox"]]


def test_without_bubblewrap_the_worker_refuses_to_start(processes: Processes) -> None:
    worker = processes.start("worker", RENDERQ_BWRAP="/nonexistent/bwrap")
    assert worker.wait(30) == 2
    [refusal] = worker.events("worker_refused_to_start")
    assert "'namespaces'" in refusal["error"]
    assert "RENDERQ_SANDBOX_ALLOW_WEAK=1" in refusal["error"]


def test_allowed_weak_sandbox_says_so_at_start_and_on_healthz(processes: Processes) -> None:
    base = processes.start_front()
    worker = processes.start(
        "worker", RENDERQ_BWRAP="/nonexistent/bwrap", RENDERQ_SANDBOX_ALLOW_WEAK="1"
    )
    processes.wait_for_log(worker, "worker_started")
    [started] = worker.events("worker_started")
    assert {"namespaces", "network", "mounts"} <= set(started["sandbox_weakened"])
    assert worker.events("sandbox_weakened"), "the weakened layers are logged at start"
    health = httpx.get(f"{base}/healthz").json()
    assert health["sandbox"] == "weakened"
    assert {"namespaces", "network", "mounts"} <= set(health["sandbox_weakened"])
    response = httpx.post(f"{base}/jobs", json={"text": "still renders"})
    assert run_job(base, response) == (200, "done")


def test_a_worker_that_cannot_switch_user_refuses_to_start(redis_url: str) -> None:
    """Not started as root, the sandbox would run as the worker's own user."""
    done = run_to_end([INSTALLED_PYTHON, "-m", "worker"], redis_url, user="renderq")
    assert done.returncode == 2
    assert b"'identity'" in done.stderr


def test_root_worker_without_its_user_refuses_to_start(processes: Processes) -> None:
    worker = processes.start("worker", RENDERQ_WORKER_USER="no-such-user-renderq")
    assert worker.wait(20) == 2
    assert "does not exist" in worker.log.read_text()


def test_the_policy_follows_the_settings() -> None:
    settings = Settings.from_env(
        {"RENDERQ_MAX_INPUT_PIXELS": "1234567", "RENDERQ_MAX_INPUT_WIDTH": "3000"}
    )
    xml = policy_xml(settings)
    assert '<policy domain="resource" name="area" value="1234567"/>' in xml
    assert '<policy domain="resource" name="width" value="3000"/>' in xml
    assert f'name="list-length" value="{LIST_LENGTH}"' in xml
    assert '<policy domain="coder" rights="none" pattern="*"/>' in xml


PERMISSIVE_POLICY = """<policymap>
  <policy domain="coder" rights="read|write" pattern="{MVG,PDF}"/>
  <policy domain="module" rights="read|write" pattern="{MVG,PDF}"/>
  <policy domain="delegate" rights="read|write" pattern="*"/>
</policymap>
"""


@pytest.fixture
def permissive_host(tmp_path: Path) -> Callable[[list[str]], list[str]]:
    """Run a command where the host's /etc/ImageMagick-6/policy.xml allows MVG and PDF: in
    a mount namespace of its own, so the real host file is never touched."""
    policy = tmp_path / "policy.xml"
    policy.write_text(PERMISSIVE_POLICY)

    def wrap(argv: list[str]) -> list[str]:
        script = f'mount --bind {policy} /etc/ImageMagick-6/policy.xml && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "-", *argv]

    return wrap


def test_a_host_policy_that_allows_mvg_and_pdf_changes_nothing_in_the_sandbox(
    permissive_host: Callable[[list[str]], list[str]],
) -> None:
    code = textwrap.dedent(
        """
        import json
        from renderq.settings import Settings
        from worker.sandbox import Sandbox
        box = Sandbox(Settings.from_env({"RENDERQ_SANDBOX_TEST_HOOK": "1"}))
        box.start()
        hook = '''
        from wand.image import Image
        from wand.exceptions import PolicyError
        for fmt, blob in (("mvg", b"viewbox 0 0 1 1"), ("pdf", b"%PDF-1.4")):
            try:
                Image(blob=blob, format=fmt)
                report[fmt] = "read"
            except PolicyError:
                report[fmt] = "refused"
        '''
        print(json.dumps(box.run_hook(hook)))
        box.close()
        """
    )
    host_check = subprocess.run(
        permissive_host(["cat", "/etc/ImageMagick-6/policy.xml"]), capture_output=True, check=True
    )
    assert b'pattern="{MVG,PDF}"' in host_check.stdout, "the host policy really allows them"
    done = subprocess.run(
        permissive_host([INSTALLED_PYTHON, "-c", code]),
        capture_output=True,
        check=True,
        cwd="/",
        timeout=60,
    )
    reply = json.loads(done.stdout.splitlines()[-1])
    assert reply == {"ok": True, "report": {"mvg": "refused", "pdf": "refused"}}


def test_without_bubblewrap_a_permissive_host_policy_stops_the_worker(
    redis_url: str, tmp_path: Path, permissive_host: Callable[[list[str]], list[str]]
) -> None:
    """Where the sandbox cannot hide the host's policy, the self-test catches it."""
    weak = {"RENDERQ_BWRAP": "/nonexistent/bwrap", "RENDERQ_SANDBOX_ALLOW_WEAK": "1"}
    done = run_to_end(permissive_host([INSTALLED_PYTHON, "-m", "worker"]), redis_url, env=weak)
    assert done.returncode == 2
    refusal = next(
        json.loads(line)
        for line in done.stderr.decode().splitlines()
        if "worker_refused_to_start" in line
    )
    assert "ImageMagick did not refuse" in refusal["error"]
    assert "pdf" in refusal["error"]
