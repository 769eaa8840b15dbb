"""`python -m bench`: the front's accept rate, then each job through the queue next to the
same renders with no queue. One private Redis, one front and 2 workers; phases run one at a time.

Jobs: a short text (`pillow`, `imagemagick`) and a 1024x768 JPEG made into a 256 px JPEG
thumbnail (`pillow image`, `imagemagick image`), see bench/jobs.py.

Rows:
  accept POST /jobs  The front validating and queueing jobs, timed before any worker starts:
                     only the front, Redis and the benchmark's HTTP client use the CPUs.
  idle pillow        One text job at a time, POST with `Prefer: wait` to the image in hand:
                     what one job costs a client on an idle system (p50, p99).
  queue <job>        End to end, from the first POST until every job has ended. The front and
                     the HTTP client run alongside the workers and compete with them for the
                     CPUs, so this mixes the front's cost with the queue's overhead.
  drain <job>        The workers and the queue alone. The workers are stopped (SIGSTOP) while the
                     same jobs are queued through the front, then resumed (SIGCONT); timed from
                     the resume until every job has ended, with the front serving no requests.
  pool <job>         The same renders in multiprocessing.Pool(2), no queue and no Redis, run
                     after the cluster is stopped: the ceiling for the machine.

The last column is the row's jobs/s over its job's pool jobs/s: for queue, what the front and
the queue together cost; for drain, what the queue costs the workers by itself.

  recording ...      The queue's scripts alone for one text job (queue, take, end), timed with
                     the metrics and job events recorded and without (bench/recording_cost.py),
                     in CPU time (Redis's in the scripts, and the client's): its p50 column
                     holds the extra microseconds per job, its last column that extra over a
                     drained pillow job's cost to the workers (2 / drain jobs/s).

Last, the sandbox's cost, in the benchmark process itself (no Redis, no front), one render at a
time (see bench/sandbox_cost.py):
  direct <job>       `render_job` called in-process, after a few warm-up renders.
  sandbox <job>      The same job through `Sandbox.render`. A text job goes to the long-lived
                     text child; an image job to a fresh child every time (fork, confinement,
                     teardown all counted). Its last column is its jobs/s over the direct row's,
                     not the pool's: 0.93 means isolation costs 7% of the throughput.
  sandbox start      A sandbox started (bubblewrap, the zygote's imports, the policy proof, the
                     warm-up, both children ready) and closed, 5 times: the median in ms is in
                     the p50 column. A worker pays it once, when it starts.

Then how cost grows (bench/growth.py, skipped with --no-growth): a thumbnail's time by its
source's size and format, the drain with 1 worker then 2, the peak memory of the front, a
worker and a sandbox process; printed, and drawn into --chart (bench/growth.png).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.accept import measure_accept
from bench.cluster import Cluster, running_cluster
from bench.growth import DEFAULT_CHART, draw_growth, format_growth, measure_growth
from bench.jobs import BenchJob, text_job, thumbnail_job
from bench.latency import latency_row, measure_idle_latency
from bench.pool import measure_pool
from bench.recording_cost import RecordingCost, measure_recording_cost
from bench.report import Row, format_table, machine_line, say
from bench.sandbox_cost import (
    START_CYCLES,
    cost_rows,
    start_row,
    time_direct,
    time_sandbox,
    time_starts,
    use_renderq_policy,
)
from bench.throughput import QueueResult, measure_drain, measure_queue
from renderq.settings import Settings

WORKERS = 2
ENGINES = ("pillow", "imagemagick")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the rows' layout
    )
    parser.add_argument("--accept-requests", type=int, default=2000, help="POSTs to time")
    parser.add_argument("--jobs", type=int, default=1000, help="pillow jobs per row")
    parser.add_argument("--im-jobs", type=int, default=300, help="imagemagick jobs per row")
    parser.add_argument("--image-jobs", type=int, default=300, help="thumbnail jobs per row")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument(
        "--sandbox-jobs", type=int, help="pillow jobs per sandbox cost row (default: --jobs)"
    )
    parser.add_argument(
        "--sandbox-im-jobs",
        type=int,
        help="imagemagick jobs per sandbox cost row (default: --im-jobs)",
    )
    parser.add_argument(
        "--no-growth", dest="growth", action="store_false", help="skip how cost grows"
    )
    parser.add_argument("--latency-jobs", type=int, default=300, help="idle latency jobs")
    parser.add_argument("--size-jobs", type=int, default=5, help="thumbnails per source size")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="the growth chart")
    args = parser.parse_args(argv)
    if args.sandbox_jobs is None:
        args.sandbox_jobs = args.jobs
    if args.sandbox_im_jobs is None:
        args.sandbox_im_jobs = args.im_jobs
    counts = [args.accept_requests, args.jobs, args.im_jobs, args.image_jobs, args.concurrency]
    counts += [args.latency_jobs, args.size_jobs]
    if min(*counts, args.sandbox_jobs, args.sandbox_im_jobs) < 1:
        parser.error("every count must be at least 1")
    return args


def progress(message: str) -> None:
    say("bench", message)


def bench_jobs(args: argparse.Namespace) -> list[tuple[BenchJob, int]]:
    """Every job measured, with how many of it each row runs."""
    texts = [(text_job("pillow"), args.jobs), (text_job("imagemagick"), args.im_jobs)]
    return texts + [(thumbnail_job(engine), args.image_jobs) for engine in ENGINES]


def run(args: argparse.Namespace) -> list[Row]:
    use_renderq_policy()  # before this process, or the pools it starts, render anything
    jobs = bench_jobs(args)
    with running_cluster() as cluster:
        progress(f"accept rate: {args.accept_requests} POST /jobs, no workers")
        accept = asyncio.run(
            measure_accept(cluster.base_url, args.accept_requests, args.concurrency)
        )
        cluster.flush()
        progress(f"starting {WORKERS} workers")
        cluster.start_workers(WORKERS)
        progress(f"idle latency: {args.latency_jobs} text jobs, one at a time")
        idle_job = text_job("pillow")
        idle = latency_row(
            idle_job, measure_idle_latency(cluster.base_url, idle_job, args.latency_jobs)
        )
        measured = [engine_phases(cluster, job, count, args.concurrency) for job, count in jobs]
        progress(f"recording cost: {args.jobs} jobs through the queue's scripts, on and off")
        recording = measure_recording_cost(cluster.redis_url, args.jobs)
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
    rows.append(idle)
    for (job, _count), (queued, drained) in zip(jobs, measured, strict=True):
        rows += compare_with_pool(job, queued, drained)
    rows.append(recording_row(recording, measured[0][1]))
    sandbox_counts = {
        "pillow": args.sandbox_jobs,
        "imagemagick": args.sandbox_im_jobs,
        "pillow image": args.image_jobs,
        "imagemagick image": args.image_jobs,
    }
    return rows + sandbox_cost_phase([job for job, _ in jobs], sandbox_counts)


def engine_phases(
    cluster: Cluster, job: BenchJob, count: int, concurrency: int
) -> tuple[QueueResult, QueueResult]:
    """The queue phase then the drain phase, back to back, so both find the workers warm on
    this job."""
    queued = queue_phase(cluster, job, count, concurrency)
    return queued, drain_phase(cluster, job, count, concurrency)


def queue_phase(cluster: Cluster, job: BenchJob, count: int, concurrency: int) -> QueueResult:
    """Warm the workers up on this job, then time `count` of them through the queue."""
    progress(f"queue: {count} {job.name} jobs through {WORKERS} workers")
    warm_up = measure_queue(cluster.base_url, cluster.redis_url, job, WORKERS * 2, WORKERS)
    asyncio.run(warm_up)
    timed = measure_queue(cluster.base_url, cluster.redis_url, job, count, concurrency)
    return asyncio.run(timed)


def drain_phase(cluster: Cluster, job: BenchJob, count: int, concurrency: int) -> QueueResult:
    """Queue `count` jobs with the workers stopped, then time only the workers emptying the
    queue, so the front and the HTTP client no longer share the CPUs with them.

    Runs right after `queue_phase` for the same job, so the workers are already warm.
    """
    progress(f"drain: {count} {job.name} jobs queued first, then {WORKERS} workers resumed")
    cluster.pause_workers()
    # If queueing fails, `Cluster.close` resumes the workers before stopping them.
    drain = measure_drain(
        cluster.base_url, cluster.redis_url, job, count, concurrency, cluster.resume_workers
    )
    return asyncio.run(drain)


def compare_with_pool(job: BenchJob, queued: QueueResult, drained: QueueResult) -> list[Row]:
    """The queue's, the drain's and the pool's rows for `job`; the first two carry their
    ratio to the pool, which renders as many jobs as the queue row."""
    progress(f"pool: {queued.jobs} {job.name} renders in Pool({WORKERS}), no queue")
    seconds = measure_pool(job, queued.jobs, WORKERS)
    pool_rate = queued.jobs / seconds
    return [
        _queue_row(f"queue {job.name} ({WORKERS} workers)", queued, pool_rate),
        _queue_row(f"drain {job.name} ({WORKERS} workers, queued first)", drained, pool_rate),
        Row(f"pool  {job.name} (Pool({WORKERS}))", queued.jobs, 0, seconds, pool_rate),
    ]


def sandbox_cost_phase(jobs: list[BenchJob], counts: dict[str, int]) -> list[Row]:
    """Each job rendered in-process, then through a sandbox, then the cost of starting a
    sandbox; in this process, once the cluster is stopped and the CPUs are free."""
    settings = Settings.from_env()
    rows: list[Row] = []
    for job in jobs:
        count = counts[job.name]
        progress(f"sandbox cost: {count} {job.name} renders in-process, then in the sandbox")
        direct = time_direct(job, settings, count)
        rows += cost_rows(job, direct, time_sandbox(job, settings, count))
    progress(f"sandbox cost: {START_CYCLES} sandboxes started and closed")
    return [*rows, start_row(time_starts(settings, START_CYCLES))]


def recording_row(cost: RecordingCost, drained: QueueResult) -> Row:
    """The metrics and events' extra time per job, as a share of what a drained pillow text
    job costs the workers (their time over the jobs: WORKERS / jobs per second)."""
    per_job_us = WORKERS / drained.per_second * 1e6
    say(
        "bench",
        f"recording: Redis {cost.redis_us_on:.0f} vs {cost.redis_us_off:.0f} us/job in the"
        f" scripts, client {cost.client_us_on:.0f} vs {cost.client_us_off:.0f} us/job CPU",
    )
    return Row(
        "recording metrics+events: extra CPU us/job (p50 col), share of a drained pillow job",
        cost.jobs,
        0,
        math.nan,
        math.nan,
        p50_ms=cost.extra_us_per_job,
        ratio=cost.extra_us_per_job / per_job_us,
    )


def _queue_row(measurement: str, result: QueueResult, pool_rate: float) -> Row:
    """One row through the queue; refused and failed jobs both count as errors."""
    errors = result.failed + result.refused
    ratio = result.per_second / pool_rate
    return Row(measurement, result.jobs, errors, result.seconds, result.per_second, ratio=ratio)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(machine_line(), flush=True)
    try:
        rows = run(args)
        print(format_table(rows), flush=True)
        if args.growth:
            with running_cluster() as cluster:
                growth = measure_growth(cluster, args.size_jobs, args.jobs, progress)
            print(format_growth(growth))
            draw_growth(growth, args.chart)
            progress(f"chart written to {args.chart}")
    except KeyboardInterrupt:
        progress("interrupted; every process it started is stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
