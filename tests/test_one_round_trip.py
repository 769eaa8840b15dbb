"""`Prefer: wait` answers a POST with the result itself; results carry a strong ETag, answer a
matching If-None-Match with 304, and may be cached until they expire."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx2 as httpx
import pytest
from redis import Redis
from starlette.testclient import TestClient

from renderq.keys import Keys
from tests.images import dark_pixels, decode
from worker.loop import Worker

RunWorker = Callable[..., Worker]


def post_waiting(
    client: TestClient,
    run_worker: RunWorker,
    body: dict[str, object],
    prefer: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST with `Prefer: prefer`, a worker starting only half a second later: a job that
    ends in the answer proves the POST waited for it and was woken when it ended."""
    timer = threading.Timer(0.5, run_worker)
    timer.start()
    try:
        return client.post("/jobs", json=body, headers={"Prefer": prefer, **(headers or {})})
    finally:
        timer.join()


def test_prefer_wait_answers_with_the_image(client: TestClient, run_worker: RunWorker) -> None:
    response = post_waiting(client, run_worker, {"text": "one trip"}, "wait=20")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert dark_pixels(decode(response.content)) > 50
    assert response.headers["preference-applied"] == "wait=20"
    location = response.headers["content-location"]
    assert location.startswith("/jobs/")
    assert "location" not in response.headers
    again = client.get(location)
    assert again.status_code == 200
    assert again.content == response.content


def test_prefer_wait_times_out_with_the_usual_202(client: TestClient) -> None:
    response = client.post(
        "/jobs", json={"text": "nobody works"}, headers={"Prefer": "respond-async, wait=1"}
    )
    assert response.status_code == 202
    assert response.headers["location"] == response.headers["content-location"]
    assert response.headers["location"] == f"/jobs/{response.json()['id']}"
    assert response.headers["preference-applied"] == "wait=1"
    assert response.json()["status"] == "queued"


def test_prefer_wait_answers_a_failed_job_with_its_error(
    client: TestClient, run_worker: RunWorker
) -> None:
    response = post_waiting(client, run_worker, {"text": "W" * 400, "size": 200}, "wait=20")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_too_large"
    assert response.headers["content-location"].startswith("/jobs/")


def test_prefer_wait_under_a_known_idempotency_key_waits_for_that_job(
    client: TestClient, run_worker: RunWorker
) -> None:
    first = client.post("/jobs", json={"text": "once"}, headers={"Idempotency-Key": "k-1"})
    key = {"Idempotency-Key": "k-1"}
    again = post_waiting(client, run_worker, {"text": "once"}, "wait=20", key)
    assert again.status_code == 200
    assert again.headers["content-type"] == "image/png"
    assert again.headers["content-location"] == first.headers["location"]


@pytest.mark.parametrize("prefer", ["wait=abc", "wait=-1", "return=minimal", "wait"])
def test_a_preference_the_front_cannot_read_is_ignored(client: TestClient, prefer: str) -> None:
    response = client.post("/jobs", json={"text": "x"}, headers={"Prefer": prefer})
    assert response.status_code == 202
    assert "preference-applied" not in response.headers


def test_prefer_wait_is_capped_at_the_longest_wait(
    client: TestClient, run_worker: RunWorker
) -> None:
    response = post_waiting(client, run_worker, {"text": "x"}, "wait=3600")
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=30"


def test_a_result_has_a_strong_etag_and_answers_304(
    client: TestClient, run_worker: RunWorker, redis: Redis, keys: Keys
) -> None:
    job_id = client.post("/jobs", json={"text": "cache me"}).json()["id"]
    run_worker()
    first = client.get(f"/jobs/{job_id}")
    etag = first.headers["etag"]
    assert etag == f'"{job_id}"', "strong: no W/ prefix"
    cache_control = first.headers["cache-control"]
    assert cache_control.startswith("private, max-age=") and cache_control.endswith(", immutable")
    max_age = int(cache_control.split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= redis.ttl(keys.result(job_id)) + 1
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        cached = client.get(f"/jobs/{job_id}", headers={"If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == etag
        assert cached.headers["cache-control"] == cache_control
    stale = client.get(f"/jobs/{job_id}", headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200
    assert stale.content == first.content


def test_a_job_not_ready_has_no_validator(client: TestClient) -> None:
    job_id = client.post("/jobs", json={"text": "later"}).json()["id"]
    response = client.get(f"/jobs/{job_id}", headers={"If-None-Match": "*"})
    assert response.status_code == 202
    assert "etag" not in response.headers
