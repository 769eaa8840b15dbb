"""`GET /metrics`: the whole deployment's counters in the Prometheus text format.

Workers serve no HTTP. What they count goes into the hash `Keys.metrics` with each job's end
(see `renderq.metrics`); each front adds its own HTTP counts there once a second. A scrape of
any front therefore reads the same totals, and a front or worker that restarts loses nothing
already counted. The gauges (queued, running, dead-lettered, live workers) are read from the
queue itself at scrape time.

Once a second each front also samples the queue's depth for the dashboard's chart and reads
the recent completion rate that a queued job's time left is computed from
(`renderq.time_left`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from renderq.keys import SERIES_SECONDS, Keys
from renderq.logs import log_event
from renderq.metrics import (
    HTTP_DURATION,
    HTTP_REQUESTS,
    STORED,
    SUM_SUFFIX,
    SUM_UNITS,
    Increments,
    le_label,
    parse_sample_name,
    stored_samples,
)
from renderq.settings import Settings
from service.auth import require_operator
from service.breaker import RedisUnavailable
from service.events import raise_if_cancelling
from service.queue import live_worker_reports, load_queue_depth

logger = logging.getLogger("renderq.service.metrics")

# The methods a request is counted under by name; any other (an HTTP server may pass on any
# token a client makes up) is counted as `other`, so no client can add series at will.
_COUNTED_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class FrontCounts:
    """This front's HTTP counts since they were last added to Redis, and what it last read of
    the queue: the completion rate over `RENDERQ_RATE_WINDOW`."""

    def __init__(self, redis: Redis, keys: Keys, rate_window: int) -> None:
        self._redis = redis
        self._keys = keys
        self._window = max(1, rate_window)
        self._pending = Increments()
        # Requests since the last sync, by (route, method, status), and their durations: kept
        # as plain tuples on the request path, turned into samples once a second.
        self._requests: dict[tuple[str, str, int], list[float]] = {}
        self.jobs_per_second = 0.0

    def record_request(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one answered request under its route's template, not its path: job ids
        would make a series per job."""
        template = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"] if scope["method"] in _COUNTED_METHODS else "other"
        self._requests.setdefault((template, method, status), []).append(seconds)

    def _take_pending(self) -> Increments:
        pending, self._pending = self._pending, Increments()
        requests, self._requests = self._requests, {}
        for (route, method, status), durations in requests.items():
            labels = {"route": route, "method": method}
            pending.count(HTTP_REQUESTS, {**labels, "status": str(status)}, by=len(durations))
            for seconds in durations:
                pending.observe(HTTP_DURATION, labels, seconds)
        return pending

    async def run(self) -> None:
        """Once a second until cancelled; a Redis that fails is tried again the next second
        (the counts wait in memory)."""
        while True:
            await asyncio.sleep(1)
            try:
                await self.sync()
            except (RedisError, OSError) as exc:
                raise_if_cancelling(exc)
                log_event(logger, "metrics_not_synced", logging.WARNING, error=str(exc))

    async def sync(self) -> None:
        """Add this front's counts to Redis, sample the queue's depth, read the rate."""
        pending = self._take_pending()
        now = int(time.time())
        seconds = range(now - self._window, now)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sample, by in pending.counts.items():
                    pipe.hincrby(self._keys.metrics, sample, by)
                pipe.mget([self._keys.ended_in_second(second) for second in seconds])
                # A counter Redis refuses to add to (another version's) is dropped, alone.
                *added, ended = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._pending.merge(pending)  # counted next time, not lost
            raise
        refused = [reply for reply in added if isinstance(reply, ResponseError)]
        if refused:
            log_event(logger, "metrics_refused", logging.WARNING, error=str(refused[0]))
        if isinstance(ended, Exception):
            raise ended
        # Summed over every tenant's stream (see `load_queue_depth`): a script of its own.
        depth = (await load_queue_depth(self._redis, self._keys)).entries
        await self._redis.set(self._keys.depth_in_second(now), depth, ex=SERIES_SECONDS, nx=True)
        self.jobs_per_second = sum(int(count) for count in ended if count) / self._window


class StoredMetrics:
    """A prometheus_client collector of what Redis holds, read once per scrape."""

    def __init__(self, stored: dict[str, float], queue: dict[str, Any]) -> None:
        self._stored = stored
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        yield from _stored_families(self._stored)
        yield from _queue_gauges(self._queue)


async def metrics_route(request: Request) -> Response:
    """The Prometheus exposition, behind `RENDERQ_METRICS_TOKEN` when one is set, and an
    admin API key when keys are required."""
    state = request.app.state.front
    if state.settings.metrics_token or state.settings.auth_required:
        await require_operator(request, state.settings.metrics_token, "RENDERQ_METRICS_TOKEN")
    store = state.store
    try:
        stored, queue = await store.guarded(_read, store.redis, store.keys, state.settings)
    except (RedisUnavailable, RedisError) as exc:
        log_event(logger, "metrics_unavailable", logging.WARNING, error=str(exc))
        stored, queue = {}, {"redis_up": 0}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoredMetrics(stored, queue))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _read(
    redis: Redis, keys: Keys, settings: Settings
) -> tuple[dict[str, float], dict[str, Any]]:
    """Everything a scrape shows: the stored counts and the queue, in a few round trips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.metrics)
        pipe.xlen(keys.dead_letters)
        stored, dead = await pipe.execute()
    depth = await load_queue_depth(redis, keys)
    workers = await live_worker_reports(redis, keys, settings.worker_lease_ttl)
    queue = {
        "redis_up": 1,
        "queued": depth.waiting,
        "running": depth.running,
        "by_tenant": depth.by_tenant,
        "dead": int(dead),
        "workers": workers,
    }
    return stored_samples(stored), queue


def _stored_families(stored: dict[str, float]) -> Iterator[Metric]:
    """The counters and histograms of `renderq.metrics.STORED`, buckets summed up."""
    samples: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for sample, raw in stored.items():
        name, labels = parse_sample_name(sample)
        base = name
        for suffix in ("_bucket", SUM_SUFFIX):
            if name.endswith(suffix) and name.removesuffix(suffix) in STORED:
                base = name.removesuffix(suffix)
        if base in STORED:
            samples.setdefault(base, []).append((name, labels, raw))
    for base, metric in STORED.items():
        found = samples.get(base, [])
        if metric.kind == "counter":
            family = CounterMetricFamily(base.removesuffix("_total"), metric.help, labels=())
            for _, sample_labels, count in found:
                family.add_sample(base, sample_labels, count)
            yield family
        else:
            yield _histogram(base, metric.help, metric.buckets, found)


def _histogram(
    name: str,
    help_text: str,
    bounds: tuple[float, ...],
    found: Iterable[tuple[str, dict[str, str], float]],
) -> HistogramMetricFamily:
    """One family from the stored per-interval counts: each series' buckets made cumulative."""
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample, labels, value in found:
        le = labels.pop("le", None)
        entry = series.setdefault(tuple(sorted(labels.items())), {"buckets": {}, "sum": 0.0})
        if sample.endswith("_bucket") and le is not None:
            entry["buckets"][le] = value
        elif sample.endswith(SUM_SUFFIX):
            entry["sum"] = value / SUM_UNITS
    label_names = sorted({key for pairs in series for key, _ in pairs})
    family = HistogramMetricFamily(name, help_text, labels=label_names)
    for pairs, entry in sorted(series.items()):
        running = 0.0
        buckets = []
        for bound in [*bounds, math.inf]:
            le = "+Inf" if bound == math.inf else le_label(bound)
            running += entry["buckets"].get(le, 0.0)
            buckets.append((le, running))
        values = dict(pairs)
        family.add_metric([values.get(key, "") for key in label_names], buckets, entry["sum"])
    return family


def _queue_gauges(queue: dict[str, Any]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "renderq_redis_up", "1 when this front could read Redis", queue["redis_up"]
    )
    if not queue["redis_up"]:
        return
    yield GaugeMetricFamily("renderq_jobs_queued", "jobs waiting for a worker", queue["queued"])
    yield GaugeMetricFamily("renderq_jobs_running", "jobs a worker holds", queue["running"])
    by_tenant = GaugeMetricFamily(
        "renderq_tenant_jobs_queued", "a tenant's jobs waiting for a worker", labels=["tenant"]
    )
    for tenant, (entries, running) in sorted(queue["by_tenant"].items()):
        by_tenant.add_metric([tenant], max(0, entries - running))
    yield by_tenant
    yield GaugeMetricFamily(
        "renderq_jobs_dead_lettered", "jobs in the dead letters, to requeue", queue["dead"]
    )
    workers = queue["workers"]
    yield GaugeMetricFamily(
        "renderq_workers_alive", "workers whose lease is fresh (their heartbeat)", len(workers)
    )
    per_worker = (
        ("renderq_worker_jobs_done", "jobs this worker run has ended", "jobs_done"),
        ("renderq_worker_rss_bytes", "the worker process's resident memory", "rss_bytes"),
        (
            "renderq_worker_peak_rss_bytes",
            "the worker process's peak resident memory",
            "peak_rss_bytes",
        ),
    )
    for name, help_text, field in per_worker:
        family = GaugeMetricFamily(name, help_text, labels=["worker"])
        for report in workers:
            if field in report:
                family.add_metric([str(report.get("consumer", ""))], float(report[field]))
        yield family
