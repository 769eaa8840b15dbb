"""Submit jobs to the front with a fixed number of requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx


@dataclass
class Submission:
    """What came back so far: accepted job ids, their latencies, and refused requests."""

    job_ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0


def http_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    """One connection per request in flight, kept alive, so no request waits on a handshake."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)


async def submit_jobs(
    client: httpx.AsyncClient,
    post: dict[str, Any],
    count: int,
    concurrency: int,
    into: Submission,
) -> None:
    """POST `count` jobs (`post`: httpx's arguments, see `BenchJob.post_arguments`) from
    `concurrency` lanes sharing one counter; results go to `into`, which the caller may read
    while this runs."""
    tickets = iter(range(count))
    lanes = (_lane(client, post, tickets, into) for _ in range(concurrency))
    await asyncio.gather(*lanes)


async def _lane(
    client: httpx.AsyncClient, post: dict[str, Any], tickets: Iterator[int], into: Submission
) -> None:
    # The iterator is shared: each lane takes the next ticket only when its request is back.
    for _ in tickets:
        await _submit_one(client, post, into)


async def _submit_one(client: httpx.AsyncClient, post: dict[str, Any], into: Submission) -> None:
    started = time.perf_counter()
    try:
        response = await client.post("/jobs", **post)
    except httpx.HTTPError:
        into.errors += 1
        return
    if response.status_code != 202:
        into.errors += 1
        return
    into.latencies_ms.append((time.perf_counter() - started) * 1000)
    into.job_ids.append(response.json()["id"])
