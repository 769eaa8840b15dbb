"""Accept rate: how fast the front validates and queues jobs, with no worker competing."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bench.jobs import text_job
from bench.submit import Submission, http_client, submit_jobs

WARM_UP_REQUESTS = 50


@dataclass(frozen=True)
class AcceptResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return (self.requests - self.errors) / self.seconds


async def measure_accept(base_url: str, count: int, concurrency: int) -> AcceptResult:
    """Time `count` POST /jobs after a short warm-up that opens the connections."""
    body = text_job("pillow").post_arguments()
    async with http_client(base_url, concurrency) as client:
        await submit_jobs(client, body, WARM_UP_REQUESTS, concurrency, Submission())
        submission = Submission()
        started = time.perf_counter()
        await submit_jobs(client, body, count, concurrency, submission)
        seconds = time.perf_counter() - started
    latencies = sorted(submission.latencies_ms)
    return AcceptResult(
        requests=count,
        errors=submission.errors,
        seconds=seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list; NaN when there is nothing to rank."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
