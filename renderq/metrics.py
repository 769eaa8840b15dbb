"""How counters and histograms are kept in Redis, so that every process can count and any
front can serve the deployment's totals (`service.metrics` turns them into Prometheus text).

Each sample is one field of the hash `Keys.metrics`, named as Prometheus writes it:
`renderq_jobs_ended_total{engine="pillow",kind="text",outcome="done",code=""}`. A process
adds to it with HINCRBY (sums too, in whole microseconds); the queue's scripts add a job's
counts in the same atomic step that changes the job, so a job ended once is counted once,
whichever worker died on the way. Histogram buckets are stored one interval each (not
cumulative, so one observation touches one field besides the sum) and summed up when
served, the count too.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from renderq.job_tags import as_text


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter", "histogram" or "gauge"
    help: str
    buckets: tuple[float, ...] = ()


# A histogram's `_sum` is stored as a whole number of microseconds, under its own suffix.
SUM_UNITS: Final = 1_000_000
SUM_SUFFIX: Final = "_sum_us"

# Upper bounds in seconds; an observation above the last goes to +Inf.
RENDER_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
HTTP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30)

SUBMITTED = Metric("renderq_jobs_submitted_total", "counter", "jobs queued, by kind and engine")
ENDED = Metric(
    "renderq_jobs_ended_total",
    "counter",
    "jobs ended, by kind, engine, outcome (done or failed) and error code",
)
CANCELLED = Metric("renderq_jobs_cancelled_total", "counter", "queued jobs cancelled")
QUEUE_WAIT = Metric(
    "renderq_queue_wait_seconds",
    "histogram",
    "time from queued to started, by kind and engine",
    WAIT_BUCKETS,
)
RENDER_DURATION = Metric(
    "renderq_render_duration_seconds",
    "histogram",
    "time a worker spent rendering a job in its sandbox, by kind and engine",
    RENDER_BUCKETS,
)
CHILDREN_STARTED = Metric(
    "renderq_sandbox_children_started_total", "counter", "sandbox children the workers forked"
)
CHILDREN_FAILED = Metric(
    "renderq_sandbox_children_failed_total",
    "counter",
    "sandbox children that died rendering, by reason (timeout, memory, crash)",
)
HTTP_REQUESTS = Metric(
    "renderq_http_requests_total", "counter", "HTTP requests, by route, method and status"
)
HTTP_DURATION = Metric(
    "renderq_http_request_duration_seconds",
    "histogram",
    "time to answer an HTTP request, by route and method",
    HTTP_BUCKETS,
)
# Every metric kept in `Keys.metrics`, by name.
STORED: Final = {
    metric.name: metric
    for metric in (
        SUBMITTED,
        ENDED,
        CANCELLED,
        QUEUE_WAIT,
        RENDER_DURATION,
        CHILDREN_STARTED,
        CHILDREN_FAILED,
        HTTP_REQUESTS,
        HTTP_DURATION,
    )
}

# What a failed sandbox child's job fails with, by the reason the metrics give.
CHILD_FAILURES: Final = {
    "render_timeout": "timeout",
    "render_memory": "memory",
    "render_crashed": "crash",
}


def sample_name(name: str, labels: Mapping[str, str] | None = None) -> str:
    """The hash field of one sample: its name and labels as the exposition format writes them."""
    if not labels:
        return name
    return _sample_name(name, tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=4096)
def _sample_name(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """Cached: a worker names the same few samples for every job it ends."""
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels)
    return f"{name}{{{inner}}}"


def parse_sample_name(sample: str) -> tuple[str, dict[str, str]]:
    """The inverse of `sample_name`."""
    name, brace, rest = sample.partition("{")
    if not brace:
        return name, {}
    labels: dict[str, str] = {}
    body = rest[:-1]
    while body:
        key, _, body = body.partition('="')
        value, index = _read_quoted(body)
        labels[key] = value
        body = body[index + 1 :].removeprefix(",")
    return name, labels


def stored_samples(raw: Mapping[Any, Any]) -> dict[str, float]:
    """The metrics hash as read from Redis, by sample. A value that does not read as a number
    (written by hand, or by another version) is left out rather than failing the reader."""
    samples = {}
    for name, value in raw.items():
        try:
            samples[as_text(name)] = float(as_text(value))
        except ValueError:
            continue
    return samples


def bucket_label(bounds: tuple[float, ...], value: float) -> str:
    """The `le` of the one interval `value` falls in."""
    index = bisect.bisect_left(bounds, value)
    return "+Inf" if index == len(bounds) else le_label(bounds[index])


@dataclass
class Increments:
    """Counts to add in one step, all whole numbers: a histogram's sum is kept in
    microseconds (`SUM_UNITS` per second), so Redis adds integers, never floats."""

    counts: dict[str, int] = field(default_factory=dict)

    def count(self, metric: Metric, labels: Mapping[str, str] | None = None, by: int = 1) -> None:
        self._add(metric.name, labels, by)

    def observe(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        """One observation of a histogram: its interval and its sum (the count is the sum of
        the intervals, made when served)."""
        self._add(f"{metric.name}_bucket", {**labels, "le": bucket_label(metric.buckets, value)})
        self._add(f"{metric.name}{SUM_SUFFIX}", labels, round(value * SUM_UNITS))

    def _add(self, name: str, labels: Mapping[str, str] | None, by: int = 1) -> None:
        if by:
            sample = sample_name(name, labels)
            self.counts[sample] = self.counts.get(sample, 0) + by

    def merge(self, other: Increments) -> None:
        for sample, by in other.counts.items():
            self.counts[sample] = self.counts.get(sample, 0) + by

    def __bool__(self) -> bool:
        return bool(self.counts)

    def encoded(self) -> str:
        """As a script takes them (see `add_metrics` in `renderq.queue_protocol`)."""
        return json.dumps(self.counts, separators=(",", ":"))


def le_label(value: float) -> str:
    """A bucket bound as `le` writes it: 1 not 1.0, 0.005 as is."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _read_quoted(body: str) -> tuple[str, int]:
    """The value up to the closing quote, unescaped, and the index of that quote."""
    out = []
    index = 0
    while index < len(body) and body[index] != '"':
        if body[index] == "\\" and index + 1 < len(body):
            index += 1
            out.append("\n" if body[index] == "n" else body[index])
        else:
            out.append(body[index])
        index += 1
    return "".join(out), index
