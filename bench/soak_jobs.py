"""The soak test's load: a mix of text and image jobs, paced over time with a bounded number
of requests in flight.

Every job has its own Idempotency-Key, and a submission that fails (connection error, timeout,
5xx such as 503 `redis_unavailable` while Redis restarts) is retried with that same key, so a
retry whose first attempt did get queued returns the same job instead of a second one. A job
still refused after `GIVE_UP_AFTER` seconds is "not accepted": the front never took it, so it
cannot be lost either.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from PIL import Image

GIVE_UP_AFTER = 60.0
REQUEST_TIMEOUT = 15.0  # above the front's own Redis timeouts, so it answers 503 first
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 2.0
RETRYABLE = frozenset({500, 502, 503, 504})
OPS = json.dumps([{"op": "resize", "width": 32, "height": 32, "fit": "cover"}])
# About a second of work: the jobs a worker is most often killed in the middle of.
SLOW_OPS = json.dumps(
    [{"op": "resize", "width": 1600, "height": 1200, "fit": "fill"}, {"op": "blur", "radius": 8}]
)
# Kind of job and its share of the load.
MIX = {"pillow": 0.48, "imagemagick": 0.24, "image": 0.24, "slow": 0.04}
WORDS = ("soak", "chaos", "renderq", "Redis restarted", "worker killed", "100% sure")


def small_png() -> bytes:
    """A 64x48 gradient, made once, that every image job uploads."""
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4, y * 5, 128) for y in range(48) for x in range(64)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class JobRequest:
    """One job to submit: its kind, its Idempotency-Key and what `httpx` posts."""

    kind: str
    key: str
    post: dict[str, Any]


def plan_jobs(count: int, rng: random.Random, png: bytes) -> list[JobRequest]:
    """Every job of the run, drawn up front from `rng` so a seed gives the same mix."""
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [_job_request(kind, index, rng, png) for index, kind in enumerate(kinds)]


def _job_request(kind: str, index: int, rng: random.Random, png: bytes) -> JobRequest:
    key = str(uuid.uuid4())
    if kind in ("image", "slow"):
        ops = OPS if kind == "image" else SLOW_OPS
        data = {"ops": ops, "engine": rng.choice(["pillow", "imagemagick"])}
        post: dict[str, Any] = {"files": {"file": ("soak.png", png, "image/png")}, "data": data}
    else:
        body: dict[str, Any] = {"text": f"{rng.choice(WORDS)} {index}"}
        body["size"] = rng.choice([12, 16, 24, 32, 48])
        if kind == "imagemagick":
            body["engine"] = "imagemagick"
        post = {"json": body}
    return JobRequest(kind, key, post)


@dataclass
class Submission:
    """What came back so far; the tracker reads `job_ids` while the submission runs."""

    job_ids: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    not_accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # "422 invalid_text": count
    retries: Counter[str] = field(default_factory=Counter)  # why an attempt was retried
    accepted_after_retry: int = 0
    duplicate_ids: int = 0  # one job id answered for two different keys: must stay 0
    finished: int = 0
    # The longest a client went from its first failed try to its 202 (or to giving up).
    longest_refusal: float = 0.0

    def accept(self, request: JobRequest, job_id: str, retried: bool) -> None:
        if job_id in self.kinds:
            self.duplicate_ids += 1
            return
        self.job_ids.append(job_id)
        self.kinds[job_id] = request.kind
        self.accepted_after_retry += retried


@dataclass(frozen=True)
class Attempt:
    """One POST's outcome: accepted (`job_id`), to retry (`retry`, after `delay` if the
    answer said), or refused for good (`refused`)."""

    job_id: str | None = None
    retry: str | None = None
    delay: float | None = None
    refused: str | None = None


def http_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT)


async def submit_all(
    client: httpx.AsyncClient,
    requests: list[JobRequest],
    concurrency: int,
    rate: float,
    into: Submission,
) -> None:
    """Submit every request from `concurrency` lanes, the i-th no earlier than i/`rate`
    seconds from now, so the load (and the chaos beside it) lasts a while."""
    started = time.monotonic()
    tickets = iter(enumerate(requests))
    lanes = (_lane(client, tickets, started, rate, into) for _ in range(concurrency))
    await asyncio.gather(*lanes)


async def _lane(
    client: httpx.AsyncClient,
    tickets: Iterator[tuple[int, JobRequest]],
    started: float,
    rate: float,
    into: Submission,
) -> None:
    # The iterator is shared: a lane takes the next ticket only when its job is settled.
    for index, request in tickets:
        await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        await submit_one(client, request, into)
        into.finished += 1


async def submit_one(client: httpx.AsyncClient, request: JobRequest, into: Submission) -> None:
    """POST until accepted, refused for good, or `GIVE_UP_AFTER` seconds of failures."""
    deadline = time.monotonic() + GIVE_UP_AFTER
    backoff = FIRST_BACKOFF
    first_failure: float | None = None
    while True:
        attempt = await _attempt(client, request)
        if first_failure is not None and attempt.retry is None:
            refused_for = time.monotonic() - first_failure
            into.longest_refusal = max(into.longest_refusal, refused_for)
        if attempt.job_id is not None:
            into.accept(request, attempt.job_id, retried=first_failure is not None)
            return
        if attempt.refused is not None:
            into.refused[attempt.refused] += 1
            return
        into.retries[attempt.retry or "?"] += 1
        first_failure = first_failure or time.monotonic()
        delay = backoff if attempt.delay is None else attempt.delay
        backoff = min(backoff * 2, MAX_BACKOFF)
        if time.monotonic() + delay > deadline:
            into.longest_refusal = max(into.longest_refusal, time.monotonic() - first_failure)
            into.not_accepted += 1
            return
        await asyncio.sleep(delay)


async def _attempt(client: httpx.AsyncClient, request: JobRequest) -> Attempt:
    headers = {"Idempotency-Key": request.key}
    try:
        response = await client.post("/jobs", headers=headers, **request.post)
    except httpx.HTTPError as exc:
        return Attempt(retry=type(exc).__name__)
    if response.status_code == 202:
        return Attempt(job_id=str(response.json()["id"]))
    label = f"{response.status_code} {_error_code(response)}"
    if response.status_code in RETRYABLE:
        return Attempt(retry=label, delay=_retry_after(response))
    return Attempt(refused=label)


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "no_error_code"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None
