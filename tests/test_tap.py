"""A live tap on the real stack: every new job is rendered once by production and once by the
tap, which compares the two in its sandbox and leaves production as it was."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image
from redis import Redis

from renderq.errors import RenderqError
from renderq.jobs import Job, new_job_id
from renderq.keys import Keys
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from tests.conftest import job_tag, run_to_end
from tests.processes import INSTALLED_PYTHON, Processes, Service, wait_until
from worker.comparison import ImageInfo, PixelComparison
from worker.sandbox import Sandbox
from worker.tap import store
from worker.tap.record import JobComparison

OPS = json.dumps([{"op": "resize", "width": 64, "height": 64}, {"op": "blur", "radius": 1.5}])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(Settings())
    box.start()
    yield box
    box.close()


def text_job(engine: str = "pillow", size: int = 40) -> Job:
    request = {"text": "Tap me", "engine": engine, "size": size}
    return Job(id=new_job_id(), kind=JobKind.TEXT, engine=engine, format="png", request=request)


def solid(color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), color).save(out, fmt)
    return out.getvalue()


def photo() -> bytes:
    """A picture with detail, so that engines resample it differently."""
    image = Image.radial_gradient("L").resize((240, 160)).convert("RGB")
    image.paste((200, 40, 40), (30, 30, 90, 90))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_sandbox_compares_two_results_in_a_child_of_their_own(sandbox: Sandbox) -> None:
    pillow, again = sandbox.render(text_job()), sandbox.render(text_job())
    info = sandbox.compare(pillow, None).first
    assert info is not None and info.format == "png"
    assert sandbox.compare(pillow, again) == PixelComparison(info, info, 0.0, 0)

    before = sandbox._take(JobKind.IMAGE).id
    other = sandbox.compare(pillow, sandbox.render(text_job("imagemagick")))
    assert sandbox._take(JobKind.IMAGE).id != before, "a comparison's child is not used again"
    assert other.first == other.second == info, "both engines lay text out alike"
    assert other.diff_mean is not None and other.diff_mean > 0
    assert other.diff_max is not None and other.diff_max > 0

    # The difference is the mean and the largest over R, G, B and A: 10 on R alone is 2.5.
    dark, light = solid((10, 20, 30)), solid((20, 20, 30))
    assert sandbox.compare(dark, light).diff_mean == 2.5
    assert sandbox.compare(dark, light).diff_max == 10
    as_jpeg = sandbox.compare(dark, solid((10, 20, 30), "JPEG"))
    assert as_jpeg.first == ImageInfo("png", 20, 10) and as_jpeg.second == ImageInfo("jpeg", 20, 10)

    bigger = sandbox.compare(pillow, sandbox.render(text_job(size=60)))
    assert bigger.first != bigger.second and bigger.diff_mean is None and bigger.diff_max is None
    assert sandbox.compare(None, pillow) == PixelComparison(None, info)
    with pytest.raises(RenderqError) as refused:
        sandbox.compare(b"GIF89a but not an image", pillow)
    assert refused.value.code == "invalid_image"


def start_tap(processes: Processes, name: str, *options: str, **env: str) -> Service:
    tap = processes.start("worker", f"tap-{name}", args=["--tap", name, *options], **env)
    processes.wait_for_log(tap, "tap_started")
    return tap


def queue(base: str, **request: Any) -> str:
    """Queue a text job, or an image job when `upload` is given; its id."""
    upload = request.pop("upload", None)
    if upload is None:
        response = httpx.post(f"{base}/jobs", json=request)
    else:
        files = {"file": ("in.png", upload, "image/png")}
        response = httpx.post(f"{base}/jobs", files=files, data=request)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def result(base: str, job_id: str) -> bytes:
    response = httpx.get(f"{base}/jobs/{job_id}?wait=25", timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def compared(redis: Redis, name: str, count: int) -> dict[str, JobComparison]:
    """The tap's comparisons by job tag, once there are `count`."""
    wait_until(lambda: len(store.comparisons(redis, Keys(), name)) >= count, 30, f"{name}'s work")
    return {found.job: found for found in store.comparisons(redis, Keys(), name)}


def test_a_tap_renders_every_new_job_beside_production_and_changes_nothing(
    processes: Processes, redis: Redis, redis_url: str
) -> None:
    keys = Keys()
    base = processes.start_front()
    worker = processes.start("worker")
    processes.wait_for_log(worker, "worker_started")
    canary = start_tap(processes, "canary")
    magick = start_tap(processes, "magick", "--engine", "imagemagick")

    text_id = queue(base, text="Hello, tap", size=36)
    image_id = queue(base, upload=photo(), ops=OPS)
    images = {job_id: result(base, job_id) for job_id in (text_id, image_id)}
    tags = {job_tag(redis, job_id): job_id for job_id in images}

    same, other = compared(redis, "canary", 2), compared(redis, "magick", 2)
    assert set(same) == set(other) == set(tags)
    for tag, found in same.items():
        job_id = tags[tag]
        assert (found.production.status, found.tap.status) == ("done", "done")
        assert found.same_size and found.same_format
        assert (found.diff_mean, found.diff_max) == (0.0, 0), "the same code renders alike"
        assert redis.get(keys.tap_result("canary", job_id)) == images[job_id]
        assert 0 < redis.ttl(keys.tap_result("canary", job_id)) <= Settings().result_ttl
        theirs = other[tag]
        assert theirs.tap.engine == "imagemagick" != theirs.production.engine
        assert theirs.same_size, "both engines plan the same size"
        assert theirs.diff_mean is not None and theirs.diff_mean > 0

    # Production rendered each job once, as if no tap ran: one delivery, one end, its own
    # result, and no tap among its workers or its group's consumers.
    assert len(worker.events("job_done")) == 2
    for job_id, image in images.items():
        assert redis.hget(keys.job(job_id), "attempts") == b"1"
        assert redis.get(keys.result(job_id)) == image
    assert redis.zcard(keys.workers) == 1
    taps = {event["consumer"] for tap in (canary, magick) for event in tap.events("tap_started")}
    consumers: Any = redis.xinfo_consumers(keys.stream, keys.group)
    assert not taps & {consumer["name"].decode() for consumer in consumers}
    assert redis.xlen(keys.tap_stream("canary")) == 0, "a copy is deleted once compared"

    report = run_to_end([INSTALLED_PYTHON, "-m", "worker.tap", "report", "magick"], redis_url)
    assert report.returncode == 0, report.stderr
    out = report.stdout.decode()
    assert "pillow / imagemagick" in out and "jobs compared: 2" in out, out
    assert "same size: 2 of 2 with both images; same format: 2 of 2" in out, out
    assert "failures: production 0, tap 0" in out, out

    # Removed while it runs: unregistered, its keys gone, and the tap sees it and stops.
    removed = run_to_end([INSTALLED_PYTHON, "-m", "worker.tap", "remove", "canary"], redis_url)
    assert json.loads(removed.stdout) == {"tap": "canary", "removed": True, "keys_deleted": 4}
    assert canary.wait(10) == 0 and canary.events("tap_removed")
    assert not canary.events("tap_leave_failed")
    assert redis.smembers(keys.taps) == {b"magick"}
    assert not redis.keys(f"{keys.prefix}:tap:canary:*")


def test_a_dead_tap_costs_production_a_capped_copy_and_a_kept_upload(
    processes: Processes, redis: Redis
) -> None:
    keys = Keys()
    store.register(redis, keys, "gone")  # registered, and never read: as a tap that died
    base = processes.start_front(RENDERQ_TAP_MAX="10")
    worker = processes.start("worker")
    processes.wait_for_log(worker, "worker_started")
    image_id = queue(base, upload=photo(), ops=OPS)
    ids = [queue(base, text=f"job {n}") for n in range(150)]
    for job_id in (image_id, ids[-1]):
        result(base, job_id)
    worker.wait_for_events("job_done", 151)
    # Trimmed as production copies (MAXLEN ~: whole nodes of up to 100 entries go).
    assert redis.xlen(keys.tap_stream("gone")) <= 10 + 100
    assert 0 < redis.ttl(keys.input(image_id)) <= Settings().tap_input_ttl, "kept for the tap"


def test_a_tap_name_is_checked_before_anything_starts(redis_url: str) -> None:
    refused = run_to_end([INSTALLED_PYTHON, "-m", "worker", "--tap", "no spaces"], redis_url)
    assert refused.returncode == 2 and b"invalid tap_name value" in refused.stderr
    alone = run_to_end([INSTALLED_PYTHON, "-m", "worker", "--engine", "pillow"], redis_url)
    assert alone.returncode == 2 and b"--engine is for a tap" in alone.stderr
