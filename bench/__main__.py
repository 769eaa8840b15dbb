"""`python -m bench`: measure the front's accept rate and the queue's end-to-end throughput.

Phases run one at a time on a private cluster, so on a small machine nothing measured competes
with anything else: no worker runs while the front's accept rate is taken, and the process-pool
baseline runs after the cluster is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from types import FrameType

from bench.accept import measure_accept
from bench.cluster import Cluster, running_cluster
from bench.pool import measure_pool
from bench.report import Row, format_table, machine_line
from bench.submit import job_body
from bench.throughput import QueueResult, measure_queue

WORKERS = 2
ENGINES = ("pillow", "imagemagick")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--accept-requests", type=int, default=2000, help="POSTs to time")
    parser.add_argument("--jobs", type=int, default=1000, help="pillow jobs end to end")
    parser.add_argument("--im-jobs", type=int, default=300, help="imagemagick jobs end to end")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    args = parser.parse_args(argv)
    if min(args.accept_requests, args.jobs, args.im_jobs, args.concurrency) < 1:
        parser.error("every count must be at least 1")
    return args


def progress(message: str) -> None:
    """Say what is running on stderr, leaving stdout to the results."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> list[Row]:
    counts = {"pillow": args.jobs, "imagemagick": args.im_jobs}
    with running_cluster() as cluster:
        progress(f"accept rate: {args.accept_requests} POST /jobs, no workers")
        accept = asyncio.run(
            measure_accept(cluster.base_url, args.accept_requests, args.concurrency)
        )
        cluster.flush()
        progress(f"starting {WORKERS} workers")
        cluster.start_workers(WORKERS)
        queued = {
            engine: queue_phase(cluster, engine, counts[engine], args.concurrency)
            for engine in ENGINES
        }
    rows = [
        Row(
            f"accept POST /jobs ({args.concurrency} in flight)",
            accept.requests,
            accept.errors,
            accept.seconds,
            accept.per_second,
            accept.p50_ms,
            accept.p99_ms,
        )
    ]
    for engine in ENGINES:
        rows += compare_with_pool(engine, queued[engine])
    return rows


def queue_phase(cluster: Cluster, engine: str, count: int, concurrency: int) -> QueueResult:
    """Warm the workers up on this engine, then time `count` jobs through the queue."""
    progress(f"queue: {count} {engine} jobs through {WORKERS} workers")
    warm_up = measure_queue(cluster.base_url, cluster.redis_url, engine, WORKERS * 2, WORKERS)
    asyncio.run(warm_up)
    timed = measure_queue(cluster.base_url, cluster.redis_url, engine, count, concurrency)
    return asyncio.run(timed)


def compare_with_pool(engine: str, queued: QueueResult) -> list[Row]:
    """The queue's row and the pool's row for `engine`, the queue row carrying the ratio."""
    progress(f"pool: {queued.jobs} {engine} renders in Pool({WORKERS}), no queue")
    seconds = measure_pool(job_body(engine), queued.jobs, WORKERS)
    pool_rate = queued.jobs / seconds
    errors = queued.failed + queued.refused
    return [
        Row(
            f"queue {engine} ({WORKERS} workers)",
            queued.jobs,
            errors,
            queued.seconds,
            queued.per_second,
            ratio=queued.per_second / pool_rate,
        ),
        Row(f"pool  {engine} (Pool({WORKERS}))", queued.jobs, 0, seconds, pool_rate),
    ]


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(machine_line(), flush=True)
    try:
        rows = run(args)
    except KeyboardInterrupt:
        progress("interrupted; every process it started is stopped")
        return 130
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
