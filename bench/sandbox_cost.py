"""What the sandbox costs a render: the same job rendered in-process and through the sandbox.

Runs in the benchmark process itself, with no Redis and no front: `render_job` called directly,
next to `Sandbox.render` through a started sandbox. Both sides are serial, so each keeps one
core busy at a time. A text job goes to the sandbox's long-lived text child; an image job to a
fresh child each time (forked by the zygote, confined, killed after its one job), so the
image row's ratio is the whole per-job price of "no residue". Starting a sandbox (bubblewrap,
the zygote's imports, the policy proof, the warm-up) is timed apart: a worker pays it once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.accept import percentile
from bench.jobs import BenchJob
from bench.report import Row
from renderq.jobs import Job, new_job_id
from renderq.settings import Settings
from worker.render import render_job
from worker.sandbox import Sandbox
from worker.sandbox.policy import policy_xml

WARM_UP = 5  # renders before timing: fonts loaded, the first-job costs paid
START_CYCLES = 5


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


def use_renderq_policy() -> None:
    """Point ImageMagick at renderq's policy before this process (or a pool it spawns) first
    renders, as the sandbox does."""
    directory = Path(tempfile.mkdtemp(prefix="renderq-bench-policy-"))
    (directory / "policy.xml").write_text(policy_xml(Settings()))
    os.environ["MAGICK_CONFIGURE_PATH"] = str(directory)


def queued_job(job: BenchJob) -> Job:
    """The job a worker would take from the queue for `job`."""
    return Job(new_job_id(), job.kind, job.engine, "png", job.request)


def time_calls(render: Callable[[], bytes], count: int) -> Timing:
    """Call `render` `count` times back to back, timing each call and the whole run."""
    latencies_ms: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        call_started = time.perf_counter()
        render()
        latencies_ms.append((time.perf_counter() - call_started) * 1000)
    return Timing(count, time.perf_counter() - started, latencies_ms)


def time_direct(job: BenchJob, settings: Settings, count: int) -> Timing:
    """`count` in-process renders, after a warm-up so font loading is not counted."""
    upload = job.upload

    def render() -> bytes:
        return render_job(job.kind, job.request, upload, settings)

    for _ in range(WARM_UP):
        render()
    return time_calls(render, count)


def time_sandbox(job: BenchJob, settings: Settings, count: int) -> Timing:
    """`count` renders through one sandbox, started and warmed up before the clock starts.

    The text child is allowed every render of the run, so no replacement lands in the timing.
    """
    needed = WARM_UP + count
    one_child = dataclasses.replace(
        settings, sandbox_max_jobs=max(settings.sandbox_max_jobs, needed + 1)
    )
    sandbox = Sandbox(one_child)
    queued, upload = queued_job(job), job.upload
    try:
        sandbox.start()
        for _ in range(WARM_UP):
            sandbox.render(queued, upload)
        return time_calls(lambda: sandbox.render(queued, upload), count)
    finally:
        sandbox.close()


def time_starts(settings: Settings, cycles: int) -> Timing:
    """`cycles` sandboxes, each started (both children ready) and closed."""
    latencies_ms: list[float] = []
    started = time.perf_counter()
    for _ in range(cycles):
        sandbox = Sandbox(settings)
        cycle_started = time.perf_counter()
        sandbox.start()
        sandbox.close()
        latencies_ms.append((time.perf_counter() - cycle_started) * 1000)
    return Timing(cycles, time.perf_counter() - started, latencies_ms)


def cost_rows(job: BenchJob, direct: Timing, sandboxed: Timing) -> list[Row]:
    """The direct row and the sandbox row; the latter carries its ratio to the former."""
    ratio = sandboxed.per_second / direct.per_second
    return [
        _timing_row(f"direct {job.name} (in-process, 1 core)", direct),
        _timing_row(f"sandbox {job.name} (1 core)", sandboxed, ratio),
    ]


def start_row(starts: Timing) -> Row:
    """Starts are not jobs: the row gives only their count, total time and median."""
    p50 = statistics.median(starts.latencies_ms)
    return Row(
        "sandbox start (bwrap+zygote+children)", starts.count, 0, starts.seconds, math.nan, p50
    )


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
