"""The HTTP API against a real Redis, with an in-process worker taking the queued jobs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from starlette.testclient import TestClient

from renderq.jobs import is_job_id
from renderq.keys import Keys
from renderq.settings import Settings
from service.app import create_app
from tests.conftest import environ_for, queued_anything
from tests.images import dark_pixels, decode
from worker.loop import Worker

RunWorker = Callable[..., Worker]


def submit(client: TestClient, body: dict[str, Any]) -> str:
    response = client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_post_answers_202_with_an_unguessable_id_and_location(
    client: TestClient, redis: Redis, keys: Keys
) -> None:
    response = client.post("/jobs", json={"text": "Hello"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert is_job_id(body["id"])
    assert response.headers["location"] == f"/jobs/{body['id']}"
    assert redis.xlen(keys.stream) == 1
    assert 0 < redis.ttl(keys.job(body["id"])) <= 3600
    other = submit(client, {"text": "Hello"})
    assert other != body["id"]


def test_queued_job_answers_202_with_retry_after(client: TestClient) -> None:
    job_id = submit(client, {"text": "not yet"})
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 202
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == "queued"
    assert response.json()["ready"] is False


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_done_job_serves_the_image(
    client: TestClient, run_worker: RunWorker, redis: Redis, keys: Keys, engine: str
) -> None:
    job_id = submit(client, {"text": "Hello", "engine": engine, "size": 40})
    run_worker()
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = decode(response.content)
    assert image.format == "PNG"
    assert dark_pixels(image) > 200
    status = client.get(f"/jobs/{job_id}/status").json()
    assert status["status"] == "done"
    assert status["engine"] == engine
    assert status["attempts"] == 1
    assert status["queued_at"] <= status["started_at"] <= status["finished_at"]
    assert redis.xlen(keys.stream) == 0, "acknowledged entries are deleted from the stream"
    assert 0 < redis.ttl(keys.result(job_id)) <= 3600


@pytest.mark.parametrize(
    ("fmt", "content_type", "pil_format"),
    [("jpeg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP"), ("gif", "image/gif", "GIF")],
)
def test_each_output_format(
    client: TestClient, run_worker: RunWorker, fmt: str, content_type: str, pil_format: str
) -> None:
    job_id = submit(client, {"text": "Format", "format": fmt})
    run_worker()
    response = client.get(f"/jobs/{job_id}")
    assert response.headers["content-type"] == content_type
    image = decode(response.content)
    assert image.format == pil_format
    assert dark_pixels(image) > 100


def test_status_document_in_every_state(client: TestClient, run_worker: RunWorker) -> None:
    job_id = submit(client, {"text": "status"})
    queued = client.get(f"/jobs/{job_id}/status").json()
    assert queued["status"] == "queued"
    assert queued["started_at"] is None
    assert queued["error"] is None
    run_worker()
    done = client.get(f"/jobs/{job_id}/status").json()
    assert done["status"] == "done"
    assert done["ready"] is True


def test_input_fault_fails_the_job_with_422(client: TestClient, run_worker: RunWorker) -> None:
    # Valid at the front, but it lays out wider than the width limit.
    job_id = submit(client, {"text": "W" * 400, "size": 200})
    run_worker()
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_too_large"
    status = client.get(f"/jobs/{job_id}/status").json()
    assert status["status"] == "failed"
    assert status["error"]["code"] == "image_too_large"


def test_renderq_fault_fails_the_job_with_500(
    client: TestClient, run_worker: RunWorker, redis_url: str
) -> None:
    job_id = submit(client, {"text": "no fonts here"})
    broken = Settings.from_env(environ_for(redis_url, RENDERQ_FONT_DIR="/nonexistent"))
    run_worker(broken)
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "render_failed"
    assert "Traceback" not in response.text


def test_worker_validates_the_queued_request_again(
    client: TestClient, run_worker: RunWorker, redis: Redis, keys: Keys
) -> None:
    job_id = submit(client, {"text": "tampered"})
    redis.hset(keys.job(job_id), "request", '{"text": "x", "font": "/etc/passwd"}')
    run_worker()
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_font"


@pytest.mark.parametrize("path", ["/jobs/AAAAAAAAAAAAAAAAAAAAAA", "/jobs/../etc", "/jobs/x/status"])
def test_unknown_job_answers_404_json(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] in {"job_not_found", "not_found"}


def test_expired_job_answers_404(client: TestClient, redis: Redis, keys: Keys) -> None:
    job_id = submit(client, {"text": "short-lived"})
    redis.delete(keys.job(job_id))
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get(f"/jobs/{job_id}/status").status_code == 404


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"[" * 100000 + b"]" * 100000, "application/json", 413, "body_too_large"),
        (b"[" * 30000 + b"]" * 30000, "application/json", 400, "invalid_json"),
        (b'{"text": "hi"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"text": "hi"}', "", 415, "unsupported_media_type"),
        (b'{"text": "hi", "engine": "gd"}', "application/json", 422, "unknown_engine"),
        (b'{"text": "hi", "font": "../../x.ttf"}', "application/json", 422, "unknown_font"),
        (b'{"text": "hi", "format": "svg"}', "application/json", 422, "unknown_format"),
        (b'{"text": "hi", "color": "url(#x)"}', "application/json", 422, "invalid_color"),
        (b'{"text": "hi", "size": -5}', "application/json", 422, "out_of_range"),
        (b'{"text": "hi", "size": "big"}', "application/json", 422, "invalid_type"),
        (b'{"text": "hi", "extra": 1}', "application/json", 422, "unknown_field"),
    ],
)
def test_bad_requests_get_a_json_error(
    client: TestClient, redis: Redis, content: bytes, content_type: str, status: int, code: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/jobs", content=content, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert not queued_anything(redis), "nothing is queued for a refused request"


def test_a_refusal_names_the_field(client: TestClient) -> None:
    response = client.post("/jobs", json={"text": "hi", "width": 0})
    assert response.json()["error"]["field"] == "width"


def test_unknown_route_and_method_answer_json(client: TestClient) -> None:
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    response = client.delete("/fonts")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_long_poll_answers_as_soon_as_the_job_ends(
    client: TestClient, run_worker: RunWorker
) -> None:
    job_id = submit(client, {"text": "long poll"})
    # The worker starts only after the poll is waiting; the poll must return the image, which
    # it can only do by being woken (a plain poll would have answered 202 at once).
    timer = threading.Timer(0.5, run_worker)
    timer.start()
    started = time.monotonic()
    response = client.get(f"/jobs/{job_id}?wait=20")
    timer.join()
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert time.monotonic() - started < 20


def test_long_poll_times_out_with_202(client: TestClient) -> None:
    job_id = submit(client, {"text": "nobody works"})
    response = client.get(f"/jobs/{job_id}?wait=1")
    assert response.status_code == 202
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("wait", ["31", "-1", "abc", "1.5"])
def test_long_poll_wait_is_bounded(client: TestClient, wait: str) -> None:
    job_id = submit(client, {"text": "x"})
    response = client.get(f"/jobs/{job_id}?wait={wait}")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "wait"


def test_no_job_id_reaches_the_logs(
    client: TestClient, run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """Holding an id grants its result: logs name a job by its keyed tag only."""
    with caplog.at_level(logging.INFO):
        job_id = submit(client, {"text": "secret"})
        run_worker()
        client.get(f"/jobs/{job_id}")
        client.get(f"/jobs/{job_id}/status")
        client.delete(f"/jobs/{job_id}")
    ours = [record for record in caplog.records if record.name.startswith("renderq")]
    lines = [json.dumps(getattr(record, "fields", {})) + record.getMessage() for record in ours]
    assert lines, "the requests were logged"
    assert not [line for line in lines if job_id in line]
    requests = [record for record in ours if record.getMessage() == "request"]
    paths = [record.__dict__["fields"]["path"] for record in requests]
    assert any(path.startswith("/jobs/job:") for path in paths)


def test_fonts_healthz_and_openapi(client: TestClient) -> None:
    fonts = client.get("/fonts").json()
    assert "dejavu-sans" in fonts["fonts"]
    assert fonts["default"] == "dejavu-sans"
    health = client.get("/healthz").json()
    assert (health["status"], health["redis"]) == ("ok", "ok")
    assert (health["sandbox"], health["workers"]) == ("no workers", [])
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    schema = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["properties"]["text"]["maxLength"] == 2000


def test_front_answers_503_when_redis_is_unreachable() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        response = client.post("/jobs", json={"text": "hi"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "redis_unavailable"
        assert "retry-after" in response.headers
        assert client.get("/healthz").status_code == 503
