"""Idle latency: one job at a time, from the POST to the image in hand, in one round trip
(`Prefer: wait`). Next to the same render in-process it shows what the queue adds to one job."""

from __future__ import annotations

import time

import httpx2 as httpx

from bench.accept import percentile
from bench.jobs import BenchJob
from bench.report import Row

WAIT_SECONDS = 30
WARM_UP = 20


def measure_idle_latency(base_url: str, job: BenchJob, count: int) -> list[float]:
    """Milliseconds of each of `count` jobs, sent one after the other on one connection."""
    arguments = job.post_arguments()
    headers = {**arguments.pop("headers", {}), "prefer": f"wait={WAIT_SECONDS}"}
    times = []
    with httpx.Client(base_url=base_url, timeout=WAIT_SECONDS + 10) as client:
        for index in range(WARM_UP + count):
            started = time.perf_counter()
            response = client.post("/jobs", headers=headers, **arguments)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{job.name} answered {response.status_code}: {response.text}")
            if index >= WARM_UP:
                times.append(elapsed)
    return times


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
