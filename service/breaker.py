"""A circuit breaker in front of Redis: while Redis is unreachable, answer 503 at once.

Each Redis operation of a request already gives up within `RENDERQ_REDIS_DEADLINE`. After
`RENDERQ_BREAKER_FAILURES` of them fail in a row the breaker opens: requests get their 503
without touching Redis (no connection piles up behind a frozen server), and one background
task probes Redis every `RENDERQ_BREAKER_PROBE_INTERVAL` until it answers, which closes the
breaker again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from renderq.errors import ErrorCode, QueueUnavailable
from renderq.logs import log_event

logger = logging.getLogger("renderq.service.breaker")


class RedisUnavailable(QueueUnavailable):
    def __init__(self, why: str) -> None:
        super().__init__(
            ErrorCode.REDIS_UNAVAILABLE, f"the job store is unreachable ({why}); try again shortly"
        )


class RedisBreaker:
    def __init__(
        self, probe: Callable[[], Awaitable[object]], failures: int, probe_interval: float
    ) -> None:
        self._probe = probe
        self._threshold = max(1, failures)
        self._interval = probe_interval
        self._failures = 0
        self._opened_at: float | None = None
        self._prober: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> None:
        """Raise `RedisUnavailable` at once while the breaker is open."""
        if self._opened_at is not None:
            raise RedisUnavailable("it stopped answering; the front is waiting for it")

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self) -> None:
        """Count a failed operation; open after enough in a row."""
        self._failures += 1
        if self._failures >= self._threshold and self._opened_at is None:
            self._opened_at = time.monotonic()
            log_event(logger, "redis_breaker_opened", logging.WARNING, failures=self._failures)
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._probe()
            except (RedisError, OSError, TimeoutError):
                continue
            opened_at, self._opened_at = self._opened_at, None
            self._failures = 0
            down = time.monotonic() - (opened_at or time.monotonic())
            log_event(logger, "redis_breaker_closed", open_seconds=round(down, 2))
            return

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
