"""The real front and real workers as processes: end to end, signals and run limits."""

from __future__ import annotations

import io
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
from PIL import Image
from redis import Redis

from renderq.jobs import Job
from renderq.keys import Keys
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from tests.conftest import job_tag
from tests.images import dark_pixels, decode
from tests.processes import Processes, wait_until
from worker.loop import Worker
from worker.queue import read_next_job

KEYS = Keys()
# Big enough to take a few tens of milliseconds, so a signal can land mid-render.
SLOW_JOB = {"text": "slow " * 300, "size": 64, "width": 4000, "format": "png"}


def queue_jobs(base: str, body: dict[str, object], count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = httpx.post(f"{base}/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def statuses(redis: Redis, ids: list[str]) -> list[str]:
    values = [redis.hget(KEYS.job(job_id), "status") for job_id in ids]
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values]


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_post_poll_image_end_to_end(processes: Processes, redis: Redis, engine: str) -> None:
    base = processes.start_front()
    worker = processes.start("worker")
    response = httpx.post(f"{base}/jobs", json={"text": "End to end", "engine": engine})
    assert response.status_code == 202
    location = response.headers["location"]
    image_response = httpx.get(f"{base}{location}?wait=20", timeout=30)
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/png"
    assert dark_pixels(decode(image_response.content)) > 200
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    done_lines = [
        json.loads(line) for line in worker.log.read_text().splitlines() if '"job_done"' in line
    ]
    assert len(done_lines) == 1
    job_id = location.rsplit("/", 1)[1]
    assert done_lines[0]["job"] == job_tag(redis, job_id)
    assert job_id not in worker.log.read_text(), "a job id in a log would grant its result"
    assert done_lines[0]["engine"] == engine
    assert done_lines[0]["duration_ms"] > 0


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_image_job_end_to_end(processes: Processes, engine: str) -> None:
    base = processes.start_front()
    processes.start("worker")
    photo = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 10, 10)).save(photo, "JPEG")
    ops = [{"op": "resize", "width": 64, "height": 64, "fit": "cover"}, {"op": "grayscale"}]
    response = httpx.post(
        f"{base}/jobs",
        files={"file": ("photo.jpg", photo.getvalue(), "image/jpeg")},
        data={"ops": json.dumps(ops), "format": "png", "engine": engine},
    )
    assert response.status_code == 202, response.text
    done = httpx.get(f"{base}{response.headers['location']}?wait=20", timeout=30)
    assert done.status_code == 200
    image = decode(done.content)
    assert (image.format, image.size) == ("PNG", (64, 64))
    assert dark_pixels(image) == 64 * 64


def test_sigterm_mid_job_finishes_it_then_exits_0(processes: Processes, redis: Redis) -> None:
    base = processes.start_front()
    ids = queue_jobs(base, SLOW_JOB, 20)
    worker = processes.start("worker")
    wait_until(lambda: "running" in statuses(redis, ids), what="a job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    final = statuses(redis, ids)
    assert "running" not in final, "the job in hand was finished, not abandoned"
    assert "done" in final
    assert "queued" in final, "no new job was taken after the signal"
    assert redis.xpending(KEYS.stream, KEYS.group)["pending"] == 0


def test_worker_exits_after_max_jobs(processes: Processes, redis: Redis) -> None:
    base = processes.start_front()
    ids = queue_jobs(base, {"text": "limit"}, 5)
    worker = processes.start("worker", RENDERQ_WORKER_MAX_JOBS="3")
    assert worker.wait(30) == 0
    assert sorted(statuses(redis, ids)) == ["done", "done", "done", "queued", "queued"]


def test_worker_exits_after_max_seconds(processes: Processes) -> None:
    worker = processes.start("worker", RENDERQ_WORKER_MAX_SECONDS="1")
    assert worker.wait(15) == 0


def test_idle_worker_stops_on_sigint(processes: Processes, redis: Redis) -> None:
    worker = processes.start("worker")
    wait_until(lambda: redis.exists(KEYS.stream) == 1, what="the worker to create its group")
    worker.send_signal(signal.SIGINT)
    assert worker.wait(10) == 0


def test_front_answers_requests_in_flight_on_sigterm(processes: Processes) -> None:
    base = processes.start_front()
    front = processes.started[0]
    [job_id] = queue_jobs(base, {"text": "nobody takes this"}, 1)
    with ThreadPoolExecutor(1) as pool:
        long_poll = pool.submit(httpx.get, f"{base}/jobs/{job_id}?wait=3", timeout=20)
        time.sleep(0.5)
        front.send_signal(signal.SIGTERM)
        assert long_poll.result().status_code == 202
    # uvicorn re-raises the signal once shut down, so the exit is "terminated by SIGTERM".
    assert front.wait(15) in {0, -signal.SIGTERM}


def test_a_job_taken_but_never_acknowledged_is_reclaimed(
    settings: Settings, redis: Redis, redis_url: str
) -> None:
    job = Job(
        id="A" * 22, kind=JobKind.TEXT, engine="pillow", format="png", request={"text": "again"}
    )
    redis.hset(KEYS.job(job.id), mapping=job.to_redis())
    redis.expire(KEYS.job(job.id), 60)
    worker = Worker(settings, redis, consumer="doomed")
    worker.run(burst=True)  # creates the group; nothing queued yet
    redis.xadd(KEYS.stream, {"id": job.id})
    # A worker takes the entry and dies before acknowledging it.
    assert read_next_job(redis, KEYS, "doomed", block_ms=100) is not None
    quick = Settings.from_env({"REDIS_URL": redis_url, "RENDERQ_WORKER_LEASE_TTL": "0.3"})
    Worker(quick, redis, consumer="rescuer").run(burst=True)
    assert statuses(redis, [job.id]) == ["done"]
    assert redis.hget(KEYS.job(job.id), "attempts") == b"1"
    assert redis.exists(KEYS.result(job.id)) == 1
    assert redis.xpending(KEYS.stream, KEYS.group)["pending"] == 0
    # The dead worker left the group; the rescuer left it too when it stopped cleanly.
    assert redis.xinfo_consumers(KEYS.stream, KEYS.group) == []
