"""How cost grows: a thumbnail's time against its source's size, and throughput from 1 to 2
workers, with the peak memory of each process under it; drawn as a PNG chart.

`python -m bench.growth [--chart PATH]` runs it alone on a private cluster; `python -m bench`
runs it after its own phases.

- size: one Pillow thumbnail at a time (256 px JPEG) from a 1, 4, 12 and 24 megapixel
  source, JPEG (shrunk on load) and PNG (decoded whole), each `POST /jobs` with
  `Prefer: wait`, so the time is the client's: upload, queue, render and answer. Median of
  `--size-jobs` jobs.
- workers: the drain of queued text jobs and of 1024x768 thumbnails with 1 worker, then 2.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageDraw

from bench.chart import GrowthChart
from bench.cluster import Cluster, running_cluster
from bench.jobs import THUMBNAIL_OPS, BenchJob, text_job, thumbnail_job
from bench.latency import one_round_trip_client, round_trip_ms
from bench.memory import PeakMemory
from bench.report import say
from bench.throughput import measure_drain

SOURCE_MEGAPIXELS: Final = (1, 4, 12, 24)
SOURCE_FORMATS: Final = ("jpeg", "png")
DEFAULT_CHART: Final = Path(__file__).with_name("growth.png")
# The bench jobs' names (`bench.jobs`) as the chart shows them.
_SHOWN: Final = {"pillow": "text", "pillow image": "thumbnail of 1024x768"}


@dataclass(frozen=True)
class SizeCost:
    """Median milliseconds of one thumbnail from a source of `megapixels` in `fmt`."""

    fmt: str
    megapixels: int
    upload_bytes: int
    median_ms: float


@dataclass(frozen=True)
class WorkerScaling:
    """Jobs per second of one job's drain with 1 and with 2 workers."""

    job: str
    per_second: dict[int, float]


@dataclass(frozen=True)
class Growth:
    sizes: list[SizeCost]
    scaling: list[WorkerScaling]
    peak_mib: dict[str, float]


def source_size(megapixels: int) -> tuple[int, int]:
    """A 4:3 image of about `megapixels` million pixels."""
    width = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    return width, round(width * 3 / 4)


@cache
def source(megapixels: int, fmt: str) -> bytes:
    """A photo-like source: gradients, soft noise and hard edges (the 24 MP PNG stays under
    the default upload limit of 20 MiB)."""
    size = source_size(megapixels)
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise((size[0] // 8, size[1] // 8), 40).resize(size)
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), noise))
    draw = ImageDraw.Draw(image)
    stroke = max(2, size[0] // 400)
    for column in range(12):
        box = (column * size[0] // 12, size[1] // 3, (column + 1) * size[0] // 12, 2 * size[1] // 3)
        draw.ellipse(box, outline="black", width=stroke)
    out = io.BytesIO()
    image.save(out, fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
    return out.getvalue()


def thumbnail_post(data: bytes, fmt: str) -> dict[str, Any]:
    """httpx's arguments for a 256 px JPEG thumbnail of `data`, a raw `fmt` body."""
    params = {"ops": json.dumps(THUMBNAIL_OPS), "format": "jpeg", "quality": "85"}
    return {"content": data, "params": params, "headers": {"content-type": f"image/{fmt}"}}


def measure_sizes(base_url: str, count: int, progress: Callable[[str], None]) -> list[SizeCost]:
    costs = []
    with one_round_trip_client(base_url) as client:
        for fmt in SOURCE_FORMATS:
            for megapixels in SOURCE_MEGAPIXELS:
                data = source(megapixels, fmt)
                progress(f"growth: {count} thumbnails of a {megapixels} MP {fmt}")
                post = thumbnail_post(data, fmt)
                round_trip_ms(client, post)  # warm-up: the first of a size pays extra
                times = [round_trip_ms(client, post) for _ in range(count)]
                costs.append(SizeCost(fmt, megapixels, len(data), statistics.median(times)))
    return costs


def measure_scaling(
    cluster: Cluster, jobs: list[tuple[BenchJob, int]], progress: Callable[[str], None]
) -> list[WorkerScaling]:
    """Each job's drain with the workers the cluster has (1), then with one more."""
    rates: dict[str, dict[int, float]] = {job.name: {} for job, _ in jobs}
    for workers in (1, 2):
        if len(cluster.workers) < workers:
            cluster.start_workers(workers - len(cluster.workers))
        for job, count in jobs:
            progress(f"growth: drain of {count} {job.name} jobs with {workers} worker(s)")
            cluster.pause_workers()
            drain = measure_drain(
                cluster.base_url, cluster.redis_url, job, count, 32, cluster.resume_workers
            )
            rates[job.name][workers] = asyncio.run(drain).per_second
    return [WorkerScaling(name, per_second) for name, per_second in rates.items()]


def measure_growth(
    cluster: Cluster, size_jobs: int, drain_jobs: int, progress: Callable[[str], None]
) -> Growth:
    """On a cluster with its front running and no worker yet."""
    cluster.start_workers(1)
    jobs = [(text_job("pillow"), drain_jobs), (thumbnail_job("pillow"), max(20, drain_jobs // 5))]
    scaling = measure_scaling(cluster, jobs, progress)
    front = cluster.front.pid if cluster.front else 0
    with PeakMemory(front, [worker.pid for worker in cluster.workers]) as memory:
        sizes = measure_sizes(cluster.base_url, size_jobs, progress)
    return Growth(sizes, scaling, memory.peaks_mib())


def format_growth(growth: Growth) -> str:
    lines = ["thumbnail to 256 px, one at a time (POST with Prefer: wait), median ms:"]
    header = "  source      " + "".join(f"{f'{mp} MP':>10}" for mp in SOURCE_MEGAPIXELS)
    lines.append(header)
    for fmt in SOURCE_FORMATS:
        cells = [cost for cost in growth.sizes if cost.fmt == fmt]
        lines.append(f"  {fmt:<12}" + "".join(f"{cost.median_ms:>10.1f}" for cost in cells))
        sizes = "".join(f"{cost.upload_bytes / 2**20:>9.1f}M" for cost in cells)
        lines.append(f"  {'  (upload)':<12}" + sizes)
    lines.append("drain jobs/s by workers:")
    for row in growth.scaling:
        one, two = row.per_second[1], row.per_second[2]
        lines.append(f"  {row.job:<14}{one:>8.1f} (1){two:>8.1f} (2)   x{two / one:.2f}")
    peaks = ", ".join(f"{role} {mib:.0f} MiB" for role, mib in growth.peak_mib.items())
    lines.append(f"peak resident memory: {peaks}")
    return "\n".join(lines)


def draw_growth(growth: Growth, path: Path) -> None:
    chart = GrowthChart()
    chart.lines(
        "Thumbnail to 256 px (Pillow): ms by source megapixels",
        {
            fmt.upper(): [(c.megapixels, c.median_ms) for c in growth.sizes if c.fmt == fmt]
            for fmt in SOURCE_FORMATS
        },
    )
    chart.bars(
        "Drain jobs/s (Pillow): 1 and 2 workers",
        {
            _SHOWN.get(row.job, row.job): [row.per_second[1], row.per_second[2]]
            for row in growth.scaling
        },
        ("1 worker", "2 workers"),
    )
    chart.save(path)


def progress(message: str) -> None:
    say("bench", message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--size-jobs", type=int, default=5, help="thumbnails per source size")
    parser.add_argument("--drain-jobs", type=int, default=1000, help="text jobs per drain")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="where the PNG goes")
    args = parser.parse_args(argv)
    with running_cluster() as cluster:
        growth = measure_growth(cluster, args.size_jobs, args.drain_jobs, progress)
    print(format_growth(growth))
    draw_growth(growth, args.chart)
    progress(f"chart written to {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
