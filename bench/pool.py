"""The same renders with no queue at all: a process pool calling the renderer directly.

This is the ceiling for the machine: what the queue costs is the gap between the two.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from typing import Any

from renderq.settings import Settings
from renderq.text_request import parse_text_request
from worker.engines import TEXT_RENDERERS
from worker.layout import layout_text

_SETTINGS = Settings()


def render(body: dict[str, Any]) -> int:
    """Parse, lay out and draw one request, as `worker.render.render_job` does; the size."""
    request = parse_text_request(body, _SETTINGS)
    layout = layout_text(request, _SETTINGS)
    return len(TEXT_RENDERERS[request.engine](layout, request))


def measure_pool(body: dict[str, Any], count: int, processes: int) -> float:
    """Seconds for a warmed-up pool of `processes` to render `body` `count` times."""
    context = multiprocessing.get_context("spawn")  # a clean child, as a worker process is
    ready = context.Barrier(processes)
    with context.Pool(processes, initializer=_prepare, initargs=(ready, body)) as pool:
        # Any task's completion means every child is past the barrier, hence warm.
        pool.apply(_ready)
        started = time.perf_counter()
        pool.map(render, [body] * count)
        return time.perf_counter() - started


def _prepare(ready: Barrier, body: dict[str, Any]) -> None:
    """Import, load the font and render once in each child, then wait for the others."""
    render(body)
    ready.wait()


def _ready() -> bool:
    return True
