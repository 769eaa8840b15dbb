"""What the sandbox costs a render: the same text job rendered in-process and through a child.

Runs in the benchmark process itself, with no Redis and no front: `render_job` called directly,
next to `Sandbox.render` through one warm, reused sandbox child. Both sides are serial, so each
keeps one core busy at a time. Starting a child (fork, confine, prove the ImageMagick policy)
is timed apart, since a worker pays it once per `sandbox_max_jobs` renders, not per job.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable

from bench.accept import percentile
from bench.report import Row
from bench.submit import TEXT
from renderq.jobs import Job, new_job_id
from renderq.settings import Settings
from renderq.text_request import parse_text_request
from worker.confinement import BUNDLED_POLICY_DIR
from worker.render import render_job
from worker.sandbox import Sandbox

WARM_UP = 5  # renders before timing: fonts loaded, the child's first-job costs paid
START_CYCLES = 10


@dataclasses.dataclass(frozen=True)
class Timing:
    """`count` calls of one render function: their total and each call's latency."""

    count: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def percentile_ms(self, pct: float) -> float:
        """Nearest rank, as the accept row's latencies are."""
        return percentile(sorted(self.latencies_ms), pct)


def use_bundled_policy() -> None:
    """Point ImageMagick at renderq's policy before this process first uses it: the sandbox
    child inherits what the parent read and refuses to start under any other policy."""
    os.environ["MAGICK_CONFIGURE_PATH"] = str(BUNDLED_POLICY_DIR)


def text_job(engine: str, settings: Settings) -> Job:
    """The job a worker would take from the queue for the benchmark's usual text request."""
    request = parse_text_request({"text": TEXT, "engine": engine}, settings)
    return Job(id=new_job_id(), kind="text", engine=engine, format="png", request=request.to_json())


def time_calls(render: Callable[[], bytes], count: int) -> Timing:
    """Call `render` `count` times back to back, timing each call and the whole run."""
    latencies_ms: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        call_started = time.perf_counter()
        render()
        latencies_ms.append((time.perf_counter() - call_started) * 1000)
    return Timing(count, time.perf_counter() - started, latencies_ms)


def time_direct(job: Job, settings: Settings, count: int) -> Timing:
    """`count` in-process renders, after a warm-up so font loading is not counted."""
    for _ in range(WARM_UP):
        render_job(job, settings, None)
    return time_calls(lambda: render_job(job, settings, None), count)


def time_sandbox(job: Job, settings: Settings, count: int) -> Timing:
    """`count` renders through one child, started and warmed up before the clock starts.

    The child is allowed every render of the run, so no replacement fork lands in the timing:
    that cost is the start row's, paid once per `sandbox_max_jobs` renders.
    """
    needed = WARM_UP + count
    one_child = dataclasses.replace(
        settings, sandbox_max_jobs=max(settings.sandbox_max_jobs, needed + 1)
    )
    sandbox = Sandbox(one_child)
    try:
        sandbox.start()
        for _ in range(WARM_UP):
            sandbox.render(job, None)
        return time_calls(lambda: sandbox.render(job, None), count)
    finally:
        sandbox.close()


def time_starts(settings: Settings, cycles: int) -> Timing:
    """`cycles` fresh children, each started and closed, so none renders anything."""
    latencies_ms: list[float] = []
    started = time.perf_counter()
    for _ in range(cycles):
        sandbox = Sandbox(settings)
        cycle_started = time.perf_counter()
        sandbox.start()
        sandbox.close()
        latencies_ms.append((time.perf_counter() - cycle_started) * 1000)
    return Timing(cycles, time.perf_counter() - started, latencies_ms)


def engine_rows(engine: str, direct: Timing, sandboxed: Timing) -> list[Row]:
    """The direct row and the sandbox row; the latter carries its ratio to the former."""
    ratio = sandboxed.per_second / direct.per_second
    return [
        _timing_row(f"direct {engine} (in-process, 1 core)", direct),
        _timing_row(f"sandbox {engine} (1 child, 1 core)", sandboxed, ratio),
    ]


def start_row(starts: Timing) -> Row:
    """Starts are not jobs: the row gives only their count, total time and median."""
    p50 = statistics.median(starts.latencies_ms)
    return Row("sandbox child start (fork+confine)", starts.count, 0, starts.seconds, math.nan, p50)


def _timing_row(measurement: str, timing: Timing, ratio: float = math.nan) -> Row:
    return Row(
        measurement,
        timing.count,
        0,  # a failed render raises and stops the run: these are fixed, valid jobs
        timing.seconds,
        timing.per_second,
        timing.percentile_ms(50),
        timing.percentile_ms(99),
        ratio,
    )
