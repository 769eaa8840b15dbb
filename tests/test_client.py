"""The Python client (`renderq.client`) against the real stack: a front and a worker on a
Redis of their own, started once for the module.

Both transports, every error status as its typed exception, and the retries: a Redis frozen
while a submit is retried ends with one job, not one per try.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from redis import Redis

from renderq import client as api
from renderq.client import (
    AsyncClient,
    Client,
    Flip,
    Operation,
    Resize,
    Retry,
    Rotate,
)
from renderq.fields import field_names
from renderq.image_request import IMAGE_FIELDS
from renderq.keys import Keys
from renderq.operations import OPERATIONS
from renderq.text_request import TEXT_FIELDS
from tests.conftest import environ_for
from tests.images import decode
from tests.processes import Processes, RedisServer, Service

ADMIN_TOKEN = "admin-" + secrets.token_hex(8)
UPLOAD_LIMIT = 200_000
TOO_WIDE = "W" * 400  # at size 200, far wider than RENDERQ_MAX_WIDTH


@dataclass
class Stack:
    base: str
    redis: Redis
    redis_server: RedisServer
    worker: Service

    @contextmanager
    def worker_paused(self) -> Iterator[None]:
        """No job starts meanwhile: a job submitted now stays queued."""
        self.worker.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.worker.send_signal(signal.SIGCONT)


@contextmanager
def running_stack(directory: Path) -> Iterator[Stack]:
    """A Redis, a front (admin token set, a small upload limit) and one worker."""
    server = RedisServer.start(directory)
    env = environ_for(
        server.url, RENDERQ_ADMIN_TOKEN=ADMIN_TOKEN, RENDERQ_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT)
    )
    processes = Processes(server.url, directory, env)
    try:
        base = processes.start_front()
        worker = processes.start("worker")
        with Redis.from_url(server.url) as redis:
            yield Stack(base, redis, server, worker)
    finally:
        processes.stop_all()
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("client")) as running:
        yield running


def photo(width: int = 120, height: int = 80, kind: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(out, kind)
    return out.getvalue()


def job_count(redis: Redis) -> int:
    return len(redis.keys(Keys().job("*")))


def test_the_clients_fields_and_ops_are_the_contracts() -> None:
    """The typed keyword arguments name exactly the API's fields, and every op the server
    knows has its builder in `renderq.client`."""
    assert set(api.TextFields.__annotations__) == set(field_names(TEXT_FIELDS)) - {"text"}
    assert set(api.ImageFields.__annotations__) == set(field_names(IMAGE_FIELDS)) - {"ops"}
    builders = {getattr(api, name) for name in api.__all__}
    ops = {
        f.default
        for builder in builders
        if dataclasses.is_dataclass(builder)
        for f in dataclasses.fields(builder)
        if f.name == "op"
    }
    assert ops == set(OPERATIONS)


def test_the_client_and_the_command_line_load_no_rendering_stack() -> None:
    """What import-linter checks in the sources, checked in a running interpreter: imports
    made at run time by the libraries count too."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, renderq.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    roots = {name.partition(".")[0] for name in loaded}
    assert roots.isdisjoint({"PIL", "wand", "redis", "service", "worker"})
    assert "httpx2" in roots and "rich" in roots


def test_the_contracts_rules_are_checked_before_sending() -> None:
    """Nothing listens on port 9: a refusal here was decided by the client."""
    with Client("http://127.0.0.1:9", retry=Retry(within=0)) as client:
        with pytest.raises(api.InvalidRequest) as font:
            client.submit_text("hi", font="comic-sans")
        assert (font.value.code, font.value.field) == ("unknown_font", "font")
        with pytest.raises(api.InvalidRequest) as flip:
            client.submit_image(b"...", [Flip("diagonal")])
        assert (flip.value.code, flip.value.field) == ("invalid_parameter", "ops[0].direction")
        with pytest.raises(api.InvalidRequest) as cover:
            client.submit_image(b"...", [Resize(width=10, fit="cover")])
        assert cover.value.code == "missing_field"
        with pytest.raises(api.InvalidRequest):
            api.rgba("not-a-color")
        # An operator's limit is the server's to apply: this one is sent, and finds no server.
        with pytest.raises(api.ConnectionFailed):
            client.submit_text("hi", size=100_000)


def test_the_blocking_client(stack: Stack, tmp_path: Path) -> None:
    with Client(stack.base) as client:
        hello = client.render_text("Hello", size=40)
        assert (hello.content_type, hello.format, hello.extension) == ("image/png", "png", ".png")
        assert hello.job_id is not None
        saved = hello.save(tmp_path / "hello.png")
        assert decode(saved.read_bytes()).size == decode(hello.content).size
        job = client.submit_text("Later", format="webp")
        assert job.last_status is not None and job.last_status.id == job.id
        assert job.wait(30).format == "webp"
        assert job.status().state == "done"
        (tmp_path / "photo.jpg").write_bytes(photo())
        ops: list[Operation] = [Resize(64, 48, fit="cover"), Rotate(90)]
        thumb = client.render_image(tmp_path / "photo.jpg", ops, format="webp", quality=80)
        assert decode(thumb.content).size == (48, 64)
        assert decode(client.submit_image(photo(), [Resize(width=30)]).wait(30).content).width == 30
        with (tmp_path / "photo.jpg").open("rb") as file:
            assert client.submit_image(file, [Flip("vertical")]).wait(30).format == "jpeg"
        assert "dejavu-sans" in client.fonts()


def test_the_asyncio_client(stack: Stack, tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncClient(stack.base) as client:
            many = await asyncio.gather(*(client.render_text(f"text {n}") for n in range(6)))
            assert len({result.job_id for result in many}) == 6
            job = await client.submit_text("async", engine="imagemagick")
            assert (await job.wait(30)).format == "png"
            assert (await job.status()).state == "done"
            image = await client.render_image(photo(), [Resize(32, 32, fit="fill")])
            assert decode(image.content).size == (32, 32)
            with pytest.raises(api.JobFailed) as failed:
                await client.render_text(TOO_WIDE, size=200)
            assert failed.value.code == "image_too_large"
            with pytest.raises(api.NotFound):
                await client.job(secrets.token_urlsafe(16)).status()

    asyncio.run(run())


def test_each_error_status_is_a_typed_exception(stack: Stack) -> None:
    def raised(kind: type[api.RenderqError], call: Any, *args: Any, **kwargs: Any) -> Any:
        with pytest.raises(kind) as caught:
            call(*args, **kwargs)
        assert isinstance(caught.value, api.RenderqError)
        return caught.value

    with Client(stack.base) as client:
        refused = raised(api.InvalidRequest, client.submit_text, "hi", size=1000)
        assert (refused.code, refused.field, refused.status) == ("out_of_range", "size", 422)
        failed = raised(api.JobFailed, client.render_text, TOO_WIDE, size=200)
        assert (failed.code, failed.status, failed.input_fault) == ("image_too_large", 422, True)
        assert failed.job_id is not None
        job = client.submit_text(TOO_WIDE, size=200)
        assert raised(api.JobFailed, job.wait, 30).job_id == job.id
        unknown = client.job(secrets.token_urlsafe(16))
        assert (raised(api.NotFound, unknown.status).code, 404) == ("job_not_found", 404)
        raised(api.NotFound, unknown.wait, 5)
        with stack.worker_paused():
            queued = client.submit_text("never rendered")
            assert queued.cancel().state == "cancelled"
        gone = raised(api.JobCancelled, queued.wait, 5)
        assert (gone.code, gone.status, gone.job["status"]) == ("job_cancelled", 410, "cancelled")
        raised(api.JobCancelled, queued.status)
        conflict = raised(api.Conflict, queued.cancel)
        assert (conflict.code, conflict.status) == ("job_not_cancellable", 409)
        raised(api.Conflict, job.cancel)  # it ended (failed)
        big = raised(api.PayloadTooLarge, client.submit_image, b"\0" * (UPLOAD_LIMIT + 50_000))
        assert (big.code, big.status) == ("body_too_large", 413)
        odd = raised(api.UnsupportedMediaType, client.submit_image, b"plain text, no image")
        assert (odd.code, odd.status) == ("unsupported_image_format", 415)
        header = raised(api.BadRequest, client.submit_text, "hi", idempotency_key="k" * 300)
        assert (header.code, header.status) == ("invalid_header", 400)
        client.submit_text("one", idempotency_key="reused")
        reused = raised(api.InvalidRequest, client.submit_text, "two", idempotency_key="reused")
        assert reused.code == "idempotency_key_reused"
        token = raised(api.Unauthorized, client.requeue_dead_letter, "1-1", "wrong")
        assert (token.code, token.status) == ("unauthorized", 401)
        entry = raised(api.NotFound, client.requeue_dead_letter, "1-1", ADMIN_TOKEN)
        assert entry.code == "dead_letter_not_found"
        with stack.worker_paused():
            late = client.submit_text("not yet")
            timed_out = raised(api.WaitTimeout, late.wait, 0.3)
            assert (timed_out.code, timed_out.job_id) == ("wait_timeout", late.id)
            assert isinstance(timed_out, TimeoutError)


def test_a_submit_retried_through_a_frozen_redis_makes_one_job(
    own_redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each try while Redis is frozen may leave its enqueue in Redis's input buffer, run when
    it thaws; the one Idempotency-Key of the submit makes them all the same job."""
    caplog.set_level(logging.INFO, logger="renderq.client")
    processes = Processes(own_redis.url, tmp_path, environ_for(own_redis.url))
    try:
        base = processes.start_front()
        processes.start("worker")
        redis = Redis.from_url(own_redis.url)
        with Client(base) as client, ThreadPoolExecutor(1) as pool:
            own_redis.process.send_signal(signal.SIGSTOP)
            try:
                submit = pool.submit(client.submit_text, "through the freeze")
                time.sleep(2.5)
            finally:
                own_redis.process.send_signal(signal.SIGCONT)
            job = submit.result(timeout=30)
            assert job.wait(30).format == "png"
        assert job_count(redis) == 1
        retries = [
            r.getMessage() for r in caplog.records if "retrying POST /jobs" in r.getMessage()
        ]
        assert retries, "the submit was never refused, so nothing was retried"
        with Client(base, retry=Retry(within=0)) as impatient:
            own_redis.process.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(api.Unavailable) as unavailable:
                    impatient.submit_text("no retries")
            finally:
                own_redis.process.send_signal(signal.SIGCONT)
        assert (unavailable.value.code, unavailable.value.status) == ("redis_unavailable", 503)
        redis.close()
    finally:
        processes.stop_all()


def test_a_connection_refused_is_retried_then_raised() -> None:
    started = time.monotonic()
    client = Client("http://127.0.0.1:9", retry=Retry(within=0.6, first=0.1))
    with client, pytest.raises(api.ConnectionFailed) as failed:
        client.job("x").status()
    assert failed.value.status is None
    assert 0.1 < time.monotonic() - started < 3


def test_a_server_with_a_shorter_longest_wait_is_long_polled_within_it(
    stack: Stack, tmp_path: Path
) -> None:
    """A front whose `RENDERQ_MAX_WAIT` is below the client's `max_wait` refuses a longer
    `?wait=` with a 422 on `wait`: the client asks for less instead of failing the job."""
    url = stack.redis_server.url
    processes = Processes(url, tmp_path, environ_for(url))
    try:
        base = processes.start_front(RENDERQ_MAX_WAIT="3")
        with Client(base) as client:
            assert client.submit_text("short waits").wait(30).format == "png"
            assert client.flows.max_wait <= 3

        async def run() -> None:
            async with AsyncClient(base) as client:
                assert (await (await client.submit_text("async too")).wait(30)).format == "png"

        asyncio.run(run())
    finally:
        processes.stop_all()
