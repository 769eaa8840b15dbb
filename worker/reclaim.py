"""Finding jobs nobody is working on: a dead worker's, or this worker's own from before.

A worker holds at most the one entry it is rendering, so between jobs any entry pending under
its own name, on any tenant's stream, is an orphan (an earlier run under the same name died
with it, or a failover lost its end): it takes it back at once. Another worker's entries are
taken once its lease (see `worker.lease`) has been seen gone for `confirm_after` seconds: a
lease that reappears in between belonged to a live worker that could not reach a stalled
Redis, and it keeps its job. A dead worker with nothing pending leaves the consumer group.
"""

from __future__ import annotations

import time

from redis import Redis

from renderq.keys import Keys
from renderq.queue_protocol import Delivery
from worker.queue import claim_orphan, pending_by_consumer, tenants_with_entries


class OrphanFinder:
    def __init__(self, redis: Redis, keys: Keys, consumer: str, run: str, confirm_after: float):
        self._redis = redis
        self._keys = keys
        self._consumer = consumer
        self._run = run
        self._confirm_after = confirm_after
        self._missing_since: dict[str, float] = {}

    @property
    def suspects(self) -> bool:
        """Workers whose lease is gone but not for long enough yet to take their jobs."""
        return bool(self._missing_since)

    def claim(self) -> Delivery | None:
        """One orphaned entry, now delivered to this worker; None when there is none."""
        tenants = tenants_with_entries(self._redis, self._keys)
        pending = pending_by_consumer(self._redis, self._keys, tenants)
        others = [name for name in pending if name != self._consumer]
        with self._redis.pipeline(transaction=False) as pipe:
            for name in others:
                pipe.exists(self._keys.worker(name))
            alive = dict(zip(others, pipe.execute(), strict=True))
        now = time.monotonic()
        for name in list(self._missing_since):
            if alive.get(name, 1):
                del self._missing_since[name]
        candidates = [self._consumer] if pending.get(self._consumer) else []
        for name in others:
            if not alive[name]:
                since = self._missing_since.setdefault(name, now)
                if now - since >= self._confirm_after:
                    candidates.append(name)
        if not candidates:
            return None
        return claim_orphan(self._redis, self._keys, self._consumer, candidates, tenants, self._run)
