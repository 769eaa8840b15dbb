"""`python -m bench.dashboard_shot [PATH]`: the README's picture of the dashboard
(`docs/dashboard.png` by default), taken of a real stack after about a minute of traffic.

One private Redis, one front, two workers. Waves of text jobs and thumbnails on both engines
fill the chart; a text too wide for the limits fails now and then (`image_too_large`); a job
whose worker is killed mid-render goes to the dead letters (`RENDERQ_MAX_ATTEMPTS=1`); a slow
blur is in hand when the picture is taken. Needs what `make test` installs (Chromium too).
"""

from __future__ import annotations

import io
import json
import math
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
from PIL import Image
from redis import Redis

from bench.jobs import BenchJob, text_job, thumbnail_job
from renderq.keys import Keys
from tests.browser import chromium
from tests.processes import Processes, RedisServer, Service, wait_until

TRAFFIC_SECONDS = 60
TOO_WIDE = {"text": "W" * 400, "size": 200}  # valid at the front, too wide once laid out
KEYS = Keys()


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/dashboard.png")
    with tempfile.TemporaryDirectory(prefix="renderq-shot-") as directory:
        tmp = Path(directory)
        (tmp / "redis").mkdir()
        server = RedisServer.start(tmp / "redis")
        env = {
            "RENDERQ_WORKER_BLOCK_MS": "100",
            "RENDERQ_WORKER_LEASE_TTL": "1",
            "RENDERQ_MAX_ATTEMPTS": "1",
            "RENDERQ_ADMIN_TOKEN": "shown-as-a-field-only",
        }
        processes = Processes(server.url, tmp, env)
        try:
            with Redis.from_url(server.url) as redis:
                _run(processes, redis, tmp, out)
        finally:
            processes.stop_all()
            server.stop()
    sys.stdout.write(f"{out}\n")
    return 0


def _run(processes: Processes, redis: Redis, tmp: Path, out: Path) -> None:
    base = processes.start_front()
    workers = {
        name: processes.start("worker", RENDERQ_WORKER_NAME=name)
        for name in ("worker-1", "worker-2")
    }
    with httpx.Client(base_url=base, timeout=30) as client:
        _traffic(client, TRAFFIC_SECONDS / 2)
        _dead_letter(client, processes, redis, workers)
        _traffic(client, TRAFFIC_SECONDS / 2)
        _post(client, {"json": TOO_WIDE})
        in_hand = _post(client, _slow_job())
        wait_until(lambda: _status(redis, in_hand) == "running", 30, "the slow job to start")
        with chromium(tmp / "chromium") as page:
            page.open(f"{base}/dashboard")
            wait_until(
                lambda: page.evaluate("document.querySelector('#workers tr[data-job]') !== null"),
                15,
                "the page to show a job in hand",
            )
            time.sleep(1)  # the job in hand for a moment; the blur takes seconds more
            page.screenshot(out)


def _traffic(client: httpx.Client, seconds: float) -> None:
    """Bursts every half second, their size a slow wave, so the queue rises and drains."""
    rng = random.Random(12)
    kinds: list[BenchJob] = [text_job("pillow"), text_job("imagemagick")]
    kinds += [thumbnail_job("pillow"), thumbnail_job("imagemagick")]
    started = time.monotonic()
    rounds = 0
    while (elapsed := time.monotonic() - started) < seconds:
        burst = max(0, round(6 + 6 * math.sin(elapsed / 4)))
        for _ in range(burst):
            _post(client, rng.choice(kinds).post_arguments())
        rounds += 1
        if rounds % 25 == 0:
            _post(client, {"json": TOO_WIDE})
        time.sleep(0.5)


def _dead_letter(
    client: httpx.Client, processes: Processes, redis: Redis, workers: dict[str, Service]
) -> None:
    """A slow job whose worker is killed mid-render: with one attempt allowed, the delivery
    after is dead-lettered. The worker comes back under its name, as supervisord does."""
    job_id = _post(client, _slow_job())
    wait_until(lambda: _status(redis, job_id) == "running", 30, "the doomed job to start")
    delivery = redis.hget(KEYS.job(job_id), "delivery")
    owner = delivery.decode().split(" ")[0] if isinstance(delivery, bytes) else ""
    workers[owner].send_signal(signal.SIGKILL)
    workers[owner].wait(10)
    workers[owner] = processes.start("worker", RENDERQ_WORKER_NAME=owner)
    wait_until(lambda: redis.xlen(KEYS.dead_letters) == 1, 30, "the job to be dead-lettered")


def _slow_job() -> dict[str, Any]:
    """A blur that keeps a worker busy for a few seconds."""
    image = io.BytesIO()
    Image.effect_noise((1500, 1500), 40).convert("RGB").save(image, "PNG", compress_level=1)
    return {
        "files": {"file": ("slow.png", image.getvalue(), "image/png")},
        "data": {"ops": json.dumps([{"op": "blur", "radius": 20}]), "engine": "imagemagick"},
    }


def _post(client: httpx.Client, arguments: dict[str, Any]) -> str:
    response = client.post("/jobs", **arguments)
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def _status(redis: Redis, job_id: str) -> str:
    status = redis.hget(KEYS.job(job_id), "status")
    return status.decode() if isinstance(status, bytes) else ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
