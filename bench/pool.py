"""The same renders with no queue at all: a process pool calling the renderer directly.

This is the ceiling for the machine: what the queue costs is the gap between the two.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier

from bench.jobs import BenchJob
from renderq.settings import Settings
from worker.render import render_job

_SETTINGS = Settings()


def render(job: BenchJob) -> int:
    """Validate and render one job as a render child does (`worker.render.render_job`)."""
    return len(render_job(job.kind, job.request, job.upload, _SETTINGS))


def measure_pool(job: BenchJob, count: int, processes: int) -> float:
    """Seconds for a warmed-up pool of `processes` to render `job` `count` times."""
    context = multiprocessing.get_context("spawn")  # a clean child, as a worker process is
    ready = context.Barrier(processes)
    with context.Pool(processes, initializer=_prepare, initargs=(ready, job)) as pool:
        # Any task's completion means every child is past the barrier, hence warm.
        pool.apply(_ready)
        started = time.perf_counter()
        pool.map(render, [job] * count)
        return time.perf_counter() - started


def _prepare(ready: Barrier, job: BenchJob) -> None:
    """Import, load the font or decoder and render once in each child, then wait."""
    render(job)
    ready.wait()


def _ready() -> bool:
    return True
