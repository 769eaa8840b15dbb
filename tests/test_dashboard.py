"""The dashboard: the real stack, a real browser (headless Chromium over the DevTools
protocol), and numbers on the page that must match the work the test did."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
from redis import Redis
from starlette.testclient import TestClient

from renderq.keys import Keys
from renderq.queue_protocol import Ending, JobFailure, QueueLimits
from renderq.settings import Settings
from service.app import create_app
from tests.browser import Page, chromium
from tests.conftest import environ_for, job_tag
from tests.processes import Processes, RedisServer, wait_until
from worker.queue import end_job, ensure_group, read_next_job, start_job

KEYS = Keys()
LIMITS = QueueLimits(ttl=3600, max_queued=100)
ADMIN_TOKEN = "dashboard-test-token"
# Valid at the front, but it lays out wider than the width limit: the worker fails it.
TOO_WIDE = {"text": "W" * 400, "size": 200}

# What the page shows, read from its elements' data attributes.
READ_PAGE = """(() => {
  if (!document.body.dataset.updated) return { updated: null };  // no state drawn yet
  const value = (id) => document.getElementById(id).dataset.value;
  const rows = (id) => [...document.querySelectorAll(`#${id} tbody tr:not(.empty)`)]
    .map((row) => ({ ...row.dataset }));
  return {
    updated: document.body.dataset.updated,
    isolation: document.getElementById("isolation").dataset.status,
    waiting: value("waiting"), running: value("running"), dead: value("dead-count"),
    submitted: value("submitted"), done: value("done"), failed: value("failed"),
    workers: rows("workers"), failures: rows("failures"), deadLetters: rows("dead-letters"),
    renderTimes: rows("render-times"),
    notice: document.getElementById("notice").textContent,
  };
})()"""


def submit(base: str, body: dict[str, Any]) -> str:
    response = httpx.post(f"{base}/jobs", json=body, timeout=10)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def finish(base: str, job_id: str) -> httpx.Response:
    return httpx.get(f"{base}/jobs/{job_id}?wait=20", timeout=30)


def dead_letter(redis: Redis) -> str:
    """Take the one queued job as a worker would, and end it as a worker does one whose every
    delivery died: on the dead letters. Its entry id."""
    ensure_group(redis, KEYS)
    delivery = read_next_job(redis, KEYS, "doomed-worker", 10)
    assert delivery is not None
    start_job(redis, KEYS, LIMITS, delivery)
    poison = JobFailure("too_many_attempts", "delivered 4 times; each time its worker died")
    assert end_job(redis, KEYS, delivery, Ending.failed(poison, dead_letter=True), LIMITS)
    entries: Any = redis.xrange(KEYS.dead_letters)
    entry_id: str = entries[-1][0].decode()
    return entry_id


def summary(seen: dict[str, Any]) -> dict[str, Any]:
    """What the page showed, in the shape of the test's expectations."""
    numbers = ("waiting", "running", "dead", "submitted", "done", "failed")
    return {
        "numbers": tuple(seen.get(name) for name in numbers),
        "isolation": seen.get("isolation"),
        "workers": [(w["worker"], w["alive"], w.get("jobsDone")) for w in seen.get("workers", [])],
        "failures": {f["job"]: (f["code"], f["deadLettered"]) for f in seen.get("failures", [])},
        "render_counts": {t["engine"]: t["count"] for t in seen.get("renderTimes", [])},
        "dead_letters": [(d["entry"], d["job"]) for d in seen.get("deadLetters", [])],
    }


def wait_for_page(page: Page, matches: Any, what: str, timeout: float = 15) -> dict[str, Any]:
    """The page's numbers once `matches` holds for them (the page polls every 2 s)."""
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen.update(page.evaluate(READ_PAGE))
        return bool(seen["updated"]) and bool(matches(seen))

    try:
        wait_until(check, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the page showed {seen}") from None
    return seen


def test_the_page_shows_the_work_done_and_requeues_a_dead_letter(
    processes: Processes, redis: Redis, tmp_path: Path
) -> None:
    """Four jobs done on both engines, one failed by its worker, one dead letter: the page
    shows each, then requeues the dead letter with the admin token pasted into it."""
    base = processes.start_front(RENDERQ_ADMIN_TOKEN=ADMIN_TOKEN)
    poisoned = submit(base, {"text": "poisoned"})
    entry_id = dead_letter(redis)  # before any worker runs, so none takes it first
    processes.start("worker", RENDERQ_WORKER_NAME="dash-worker")
    done = [
        submit(base, {"text": f"job {n}", "engine": engine})
        for n, engine in enumerate(["pillow", "imagemagick"] * 2)
    ]
    too_wide = submit(base, TOO_WIDE)
    assert [finish(base, job_id).status_code for job_id in done] == [200] * 4
    assert finish(base, too_wide).json()["error"]["code"] == "image_too_large"
    sandbox = httpx.get(f"{base}/healthz", timeout=5).json()["sandbox"]

    with chromium(tmp_path / "chromium") as page:
        page.open(f"{base}/dashboard")
        expected = {
            "numbers": ("0", "0", "1", "6", "4", "1"),
            "isolation": sandbox,
            "workers": [("dash-worker", "true", "5")],  # jobs ended, failed ones included
            "failures": {
                job_tag(redis, too_wide): ("image_too_large", "false"),
                job_tag(redis, poisoned): ("too_many_attempts", "true"),
            },
            "render_counts": {"imagemagick": "2", "pillow": "2"},
            "dead_letters": [(entry_id, job_tag(redis, poisoned))],
        }
        wait_for_page(
            page, lambda seen: summary(seen) == expected, "the page to show the work done"
        )
        screenshot = tmp_path / "dashboard.png"
        page.screenshot(screenshot)
        assert screenshot.read_bytes().startswith(b"\x89PNG")

        page.evaluate(
            f"""document.getElementById("admin-token").value = "{ADMIN_TOKEN}";
            document.getElementById("token-form").requestSubmit();"""
        )
        wait_for_page(
            page,
            lambda seen: seen["deadLetters"][0]["canRequeue"] == "true",
            "the requeue button to be enabled by the token",
        )
        page.evaluate(f"""document.querySelector('button[data-entry="{entry_id}"]').click()""")
        after = wait_for_page(
            page, lambda seen: seen["deadLetters"] == [], "the dead letter to be requeued"
        )
        assert after["notice"] == f"requeued job {job_tag(redis, poisoned)}"
    assert finish(base, poisoned).status_code == 200, "the requeued job renders normally"


def test_requeue_needs_the_admin_token(redis_url: str, redis: Redis) -> None:
    """Without it, or with a wrong one, a 401 that says how to authenticate; with it, the job
    is back on the queue, once. The page's data never names a job by its id."""
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_ADMIN_TOKEN=ADMIN_TOKEN))
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/jobs", json={"text": "poisoned"}).json()["id"]
        entry_id = dead_letter(redis)
        url = f"/dashboard/dead-letters/{entry_id}/requeue"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
            refused = client.post(url, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        state = client.get("/dashboard/state")
        assert job_id not in state.text
        [dead] = state.json()["dead_letters"]
        assert (dead["entry"], dead["job"], dead["code"]) == (
            entry_id,
            job_tag(redis, job_id),
            "too_many_attempts",
        )
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        requeued = client.post(url, headers=admin)
        assert requeued.json() == {"requeued": True, "job": job_tag(redis, job_id)}
        assert client.get(f"/jobs/{job_id}/status").json()["status"] == "queued"
        assert redis.xlen(KEYS.dead_letters) == 0
        again = client.post(url, headers=admin)
        assert (again.status_code, again.json()["error"]["code"]) == (404, "dead_letter_not_found")
        odd = client.post("/dashboard/dead-letters/x/requeue", headers=admin)
        assert odd.status_code == 404


def test_without_an_admin_token_the_dashboard_is_read_only(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/dashboard/dashboard.js").status_code == 200
    state = client.get("/dashboard/state").json()
    assert state["read_only"] is True
    assert state["sandbox"] == {"status": "no workers", "weakened": []}
    assert state["queue"]["depth"] == 0
    refused = client.post(
        "/dashboard/dead-letters/1-0/requeue", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")


def test_the_state_answers_503_while_redis_is_down(own_redis: RedisServer) -> None:
    with TestClient(create_app(Settings.from_env(environ_for(own_redis.url)))) as client:
        own_redis.stop()
        started = time.monotonic()
        response = client.get("/dashboard/state")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "redis_unavailable"
    assert time.monotonic() - started < 5
