"""Watching it work: `/metrics` against known work, the job events, a queued job's time left.

Real Redis, real workers and sandboxes: N jobs submitted move the counters by N, a failure
shows its code, and a worker killed mid-render changes nothing in the totals.
"""

from __future__ import annotations

import json
import math
import signal
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from starlette.testclient import TestClient

from renderq.job_events import EventKind, JobEvent
from renderq.keys import Keys
from renderq.settings import Settings
from service.app import create_app
from service.metrics import FrontCounts
from tests.conftest import environ_for, job_tag, run_to_end
from tests.processes import Processes, wait_until
from tests.test_reliability import post_slow_job, wait_running
from worker.loop import Worker

KEYS = Keys()
INSTALLED = "/opt/renderq/venv/bin/python"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(get: Any, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of `/metrics`, by name and sorted labels, read with Prometheus's parser."""
    response = get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def events(redis: Redis) -> list[JobEvent]:
    entries: Any = redis.xrange(KEYS.events)
    return [JobEvent.parse(fields) for _, fields in entries]


def test_metrics_follow_known_work(client: TestClient, redis: Redis, settings: Settings) -> None:
    """Five text jobs (one of which fails in the worker) and one cancelled: every counter
    moves by exactly that, the failure under its code, the histograms count each render."""
    for n in range(4):
        assert client.post("/jobs", json={"text": f"job {n}"}).status_code == 202
    assert client.post("/jobs", json={"text": "W" * 400, "size": 200}).status_code == 202
    cancelled = client.post("/jobs", json={"text": "never"}).json()["id"]
    assert client.delete(f"/jobs/{cancelled}").status_code == 200
    before = scrape(client.get)
    assert value(before, "renderq_jobs_queued") == 5
    assert value(before, "renderq_jobs_submitted_total", kind="text", engine="pillow") == 6
    worker = Worker(settings, redis, consumer="counted-worker")
    worker.run(burst=True)
    samples = scrape(client.get)
    text = {"kind": "text", "engine": "pillow"}
    assert value(samples, "renderq_jobs_ended_total", **text, outcome="done", code="") == 4
    failed = value(
        samples, "renderq_jobs_ended_total", **text, outcome="failed", code="image_too_large"
    )
    assert failed == 1
    assert value(samples, "renderq_jobs_cancelled_total") == 1
    assert value(samples, "renderq_render_duration_seconds_count", **text) == 5
    assert value(samples, "renderq_render_duration_seconds_bucket", **text, le="+Inf") == 5
    assert value(samples, "renderq_render_duration_seconds_sum", **text) > 0
    assert value(samples, "renderq_queue_wait_seconds_count", **text) == 5
    assert value(samples, "renderq_sandbox_children_started_total") >= 1
    assert value(samples, "renderq_jobs_queued") == 0
    assert value(samples, "renderq_jobs_running") == 0
    assert value(samples, "renderq_redis_up") == 1
    # The front adds its HTTP counts to Redis once a second.
    wait_until(
        lambda: (
            value(
                scrape(client.get),
                "renderq_http_requests_total",
                route="/jobs",
                method="POST",
                status="202",
            )
            == 6
        ),
        5,
        "the front's HTTP counts",
    )


def test_events_tell_each_jobs_life(client: TestClient, redis: Redis, settings: Settings) -> None:
    done = client.post("/jobs", json={"text": "told"}).json()["id"]
    failing = client.post("/jobs", json={"text": "W" * 400, "size": 200}).json()["id"]
    cancelled = client.post("/jobs", json={"text": "never"}).json()["id"]
    client.delete(f"/jobs/{cancelled}")
    Worker(settings, redis, consumer="teller").run(burst=True)
    by_job: dict[str, list[JobEvent]] = {}
    for event in events(redis):
        by_job.setdefault(event.job, []).append(event)
    lives = {job_id: by_job[job_tag(redis, job_id)] for job_id in (done, failing, cancelled)}
    assert [e.event for e in lives[done]] == [EventKind.QUEUED, EventKind.STARTED, EventKind.ENDED]
    assert [e.event for e in lives[failing]][-1] is EventKind.FAILED
    assert lives[failing][-1].code == "image_too_large"
    assert [e.event for e in lives[cancelled]] == [EventKind.QUEUED, EventKind.CANCELLED]
    ended = lives[done][-1]
    assert (ended.kind, ended.engine, ended.worker, ended.attempt) == (
        "text",
        "pillow",
        "teller",
        1,
    )
    assert ended.duration_ms > 0
    assert lives[done][1].worker == "teller"


def test_a_counter_redis_cannot_add_to_never_fails_a_job(
    client: TestClient, redis: Redis, settings: Settings
) -> None:
    """A script that stops half way keeps its writes: recording must never stop one. With a
    counter that is not a number (another version's, or one set by hand) and an events key of
    the wrong type, jobs still end, once, and a scrape leaves the bad value out."""
    done = 'renderq_jobs_ended_total{code="",engine="pillow",kind="text",outcome="done"}'
    redis.hset(KEYS.metrics, done, "0.5")
    redis.hset(KEYS.metrics, "renderq_jobs_cancelled_total", "not a number")
    redis.set(KEYS.events, "not a stream")
    job_id = client.post("/jobs", json={"text": "still ends"}).json()["id"]
    worker = Worker(settings, redis, consumer="robust")
    worker.run(burst=True)
    assert worker.jobs_done == 1
    assert client.get(f"/jobs/{job_id}").status_code == 200
    assert redis.xlen(KEYS.stream) == 0, "ended and acknowledged"
    samples = scrape(client.get)
    assert ("renderq_jobs_ended_total", ()) not in samples
    assert value(samples, "renderq_jobs_cancelled_total") == 0
    assert client.get("/dashboard/state").status_code == 200
    text = {"kind": "text", "engine": "pillow"}
    assert value(samples, "renderq_render_duration_seconds_count", **text) == 1
    assert value(samples, "renderq_jobs_submitted_total", **text) == 1


def test_an_event_of_a_newer_version_is_read_not_refused() -> None:
    event = JobEvent.parse({b"event": b"paused", b"job": b"0123456789abcdef"})
    assert (event.event, event.job) == ("paused", "0123456789abcdef")
    assert JobEvent.parse({"event": "ended", "job": "x"}).event is EventKind.ENDED


def test_the_events_command_lists_and_follows(redis_url: str, client: TestClient) -> None:
    client.post("/jobs", json={"text": "listed"})
    listed = run_to_end([INSTALLED, "-m", "worker.events", "list", "--last", "5"], redis_url)
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert line["event"] == "queued"
    assert line["kind"] == "text"


def test_a_killed_workers_job_is_counted_once(processes: Processes, redis: Redis) -> None:
    """Killed mid-render, then rendered by another worker: one end, one render in the
    histogram, and its events say started then reclaimed then ended."""
    base = processes.start_front()
    doomed = processes.start("worker", RENDERQ_WORKER_NAME="doomed")
    job_id = post_slow_job(base)
    wait_running(redis, job_id, 1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    rescuer = processes.start("worker", RENDERQ_WORKER_NAME="rescuer")
    assert httpx.get(f"{base}/jobs/{job_id}?wait=30", timeout=40).status_code == 200
    rescuer.wait_for_events("job_done")
    samples = scrape(lambda path, headers: httpx.get(f"{base}{path}", headers=headers))
    image = {"kind": "image", "engine": "imagemagick"}
    assert value(samples, "renderq_jobs_ended_total", **image, outcome="done", code="") == 1
    assert value(samples, "renderq_render_duration_seconds_count", **image) == 1
    assert value(samples, "renderq_workers_alive") == 1

    def rescuer_report() -> Samples:  # renewed with its lease, twice a second here
        return scrape(lambda path, headers: httpx.get(f"{base}{path}", headers=headers))

    wait_until(
        lambda: value(rescuer_report(), "renderq_worker_jobs_done", worker="rescuer") == 1,
        5,
        "the rescuer's report",
    )
    assert value(rescuer_report(), "renderq_worker_peak_rss_bytes", worker="rescuer") > 0
    tag = job_tag(redis, job_id)
    life = [(e.event, e.worker, e.attempt) for e in events(redis) if e.job == tag]
    assert life == [
        (EventKind.QUEUED, "", 0),
        (EventKind.STARTED, "doomed", 1),
        (EventKind.RECLAIMED, "rescuer", 2),
        (EventKind.ENDED, "rescuer", 2),
    ]


def test_every_front_serves_the_same_totals(processes: Processes) -> None:
    """Behind a load balancer any front may be scraped: the jobs queued through one, and the
    requests it answered, are in the other's scrape too."""
    first, second = processes.start_front(), processes.start_front()
    worker = processes.start("worker")
    for n in range(3):
        queued = httpx.post(f"{first}/jobs", json={"text": f"via the first {n}"}, timeout=10)
        assert (
            httpx.get(f"{first}{queued.headers['location']}?wait=20", timeout=30).status_code == 200
        )
    worker.wait_for_events("job_done", count=3)

    def totals(base: str) -> Samples:
        return scrape(lambda path, headers: httpx.get(f"{base}{path}", headers=headers))

    text = {"kind": "text", "engine": "pillow"}
    posts = {"route": "/jobs", "method": "POST", "status": "202"}
    wait_until(  # the first front adds its HTTP counts once a second
        lambda: value(totals(second), "renderq_http_requests_total", **posts) == 3,
        5,
        "the first front's requests in the second's scrape",
    )
    for base in (first, second):
        samples = totals(base)
        assert value(samples, "renderq_jobs_submitted_total", **text) == 3
        assert value(samples, "renderq_jobs_ended_total", **text, outcome="done", code="") == 3
        assert value(samples, "renderq_render_duration_seconds_count", **text) == 3


def test_metrics_can_ask_for_a_token(redis_url: str) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_METRICS_TOKEN="s3cret"))
    with TestClient(create_app(settings)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        scrape(client.get, {"Authorization": "Bearer s3cret"})


def test_made_up_methods_add_no_series(client: TestClient) -> None:
    """A request's method is a label only when it is one of HTTP's usual ones: any other
    token a client sends is counted as `other`, so requests cannot add series at will."""
    for method in ("PROPFIND", "MKCALENDAR", "FOOBAR"):
        assert client.request(method, "/jobs").status_code == 405
    samples: Samples = {}

    def counted() -> bool:
        samples.update(scrape(client.get))
        other = {"route": "/jobs", "method": "other", "status": "405"}
        return value(samples, "renderq_http_requests_total", **other) == 3

    wait_until(counted, 5, "the front's HTTP counts")
    methods = {
        dict(labels)["method"]
        for name, labels in samples
        if name == "renderq_http_requests_total" and dict(labels)["route"] == "/jobs"
    }
    assert methods == {"other"}


def test_a_queued_job_knows_its_place_and_time_left(
    client: TestClient, redis: Redis, settings: Settings
) -> None:
    """With no rate yet there is a position but no ETA; once jobs have ended, a long queue's
    ETA is its depth over the recent rate, and Retry-After follows it within its bounds."""
    first = client.post("/jobs", json={"text": "first"})
    assert first.json()["position"] == 0
    assert first.json()["eta_seconds"] is None
    assert first.headers["retry-after"] == str(settings.retry_after)
    Worker(settings, redis, consumer="rater").run(burst=True)
    counts: FrontCounts = client.app.state.front.counts  # type: ignore[attr-defined]
    wait_until(lambda: counts.jobs_per_second > 0, 5, "a rate")
    rate = counts.jobs_per_second
    queued = [client.post("/jobs", json={"text": f"q{n}"}) for n in range(3)]
    assert [response.json()["position"] for response in queued] == [0, 1, 2]
    last = queued[-1]
    assert last.json()["eta_seconds"] == pytest.approx(3 / rate, rel=0.01)
    status = client.get(last.headers["location"] + "/status").json()
    assert (status["position"], status["eta_seconds"]) == (2, last.json()["eta_seconds"])
    poll = client.get(last.headers["location"])
    assert poll.status_code == 202
    eta = math.ceil(last.json()["eta_seconds"])
    expected = max(settings.retry_after, min(settings.max_retry_after, eta))
    assert poll.headers["retry-after"] == str(expected)
    Worker(settings, redis, consumer="rater").run(burst=True)
    done = client.get(last.headers["location"] + "/status").json()
    assert "position" not in done and "eta_seconds" not in done
