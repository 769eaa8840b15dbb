"""Idle latency: one job at a time, from the POST to the image in hand, in one round trip
(`Prefer: wait`). Next to the same render in-process it shows what the queue adds to one job."""

from __future__ import annotations

import time
from typing import Any

import httpx2 as httpx

from bench.accept import percentile
from bench.jobs import BenchJob
from bench.report import Row

WAIT_SECONDS = 30
WARM_UP = 20


def one_round_trip_client(base_url: str) -> httpx.Client:
    """A client whose timeout outlasts the longest `Prefer: wait`."""
    return httpx.Client(base_url=base_url, timeout=WAIT_SECONDS + 10)


def round_trip_ms(client: httpx.Client, arguments: dict[str, Any]) -> float:
    """Milliseconds from a `POST /jobs` with `Prefer: wait` to its result in hand;
    `arguments` are httpx's (see `BenchJob.post_arguments`). Anything but a 200 stops the
    benchmark: a time without its image measures nothing."""
    headers = {**arguments.get("headers", {}), "prefer": f"wait={WAIT_SECONDS}"}
    started = time.perf_counter()
    response = client.post("/jobs", **{**arguments, "headers": headers})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"a job answered {response.status_code}: {response.text}")
    return elapsed


def measure_idle_latency(base_url: str, job: BenchJob, count: int) -> list[float]:
    """Milliseconds of each of `count` jobs, sent one after the other on one connection."""
    arguments = job.post_arguments()
    with one_round_trip_client(base_url) as client:
        for _ in range(WARM_UP):
            round_trip_ms(client, arguments)
        return [round_trip_ms(client, arguments) for _ in range(count)]


def latency_row(job: BenchJob, times_ms: list[float]) -> Row:
    ordered = sorted(times_ms)
    seconds = sum(ordered) / 1000
    return Row(
        f"idle {job.name} (one at a time, Prefer: wait)",
        len(ordered),
        0,
        seconds,
        len(ordered) / seconds,
        percentile(ordered, 50),
        percentile(ordered, 99),
    )
