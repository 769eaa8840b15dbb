"""A worker's lease: the proof, renewed every fraction of a second, that it is alive.

A thread renews the key `Keys.worker(consumer)` (which also holds the worker's report for
`/healthz`) every `RENDERQ_WORKER_LEASE_TTL / 6` seconds, whatever the main thread is doing,
so a render that is merely slow keeps its job. When the process dies the renewals stop and
the key expires within the TTL: other workers then take its jobs (see `worker.reclaim`).
"""

from __future__ import annotations

import logging
import os
import resource
import threading
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from renderq.keys import Keys
from renderq.logs import log_event
from worker.queue import renew_lease, retire_consumer

logger = logging.getLogger("renderq.worker.lease")

RENEWALS_PER_TTL = 6


class WorkerLease:
    def __init__(self, redis: Redis, keys: Keys, consumer: str, ttl: float) -> None:
        self._redis = redis
        self._keys = keys
        self._consumer = consumer
        self._ttl = ttl
        self._report: Callable[[], str] = lambda: "{}"
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, report: Callable[[], str]) -> None:
        """Take the lease (raising if Redis is unreachable), then keep renewing it with a
        fresh `report()` each time."""
        self._report = report
        renew_lease(self._redis, self._keys, self._consumer, report(), self._ttl)
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and give the lease up, leaving the group if no job is held."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        try:
            retire_consumer(self._redis, self._keys, self._consumer)
        except RedisError as exc:
            log_event(logger, "lease_not_released", logging.WARNING, error=str(exc))

    def _renew(self) -> None:
        failing = False
        while not self._stopped.wait(self._ttl / RENEWALS_PER_TTL):
            try:
                renew_lease(self._redis, self._keys, self._consumer, self._report(), self._ttl)
            except RedisError as exc:
                if not failing:
                    log_event(logger, "lease_not_renewed", logging.WARNING, error=str(exc))
                failing = True
                continue
            if failing:
                log_event(logger, "lease_renewed")
            failing = False


def memory_use() -> dict[str, int]:
    """This process's resident memory now and at its peak, in bytes."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rss_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"),
        "peak_rss_bytes": peak_kib * 1024,
    }
