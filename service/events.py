"""Wake long-polling requests when their job ends, with one pub/sub subscription per process.

Workers publish each finished job id on `Keys.finished_channel`. A single listener task
fans those messages out to the requests waiting on that id, so a long poll costs no Redis
round trips while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from renderq.logs import log_event

logger = logging.getLogger("renderq.service.events")

RECONNECT_DELAY = 1.0


class JobEvents:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def waiter(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when `job_id` ends; register before re-reading the job to miss nothing."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiters.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[job_id]

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        """While the subscription is down messages may be lost: let every waiter re-read."""
        for job_id in list(self._waiters):
            self._wake(job_id)

    async def listen(self) -> None:
        """Run until cancelled, resubscribing after Redis connection errors."""
        while True:
            try:
                await self._listen_once()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                raise_if_cancelling(exc)
                log_event(logger, "events_disconnected", logging.WARNING, error=str(exc))
                self._wake_all()
                await asyncio.sleep(RECONNECT_DELAY)

    async def _listen_once(self) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self._channel)
            log_event(logger, "events_subscribed", channel=self._channel)
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is not None and message["type"] == "message":
                    self._wake(message["data"].decode())


def raise_if_cancelling(error: BaseException) -> None:
    """Raise CancelledError if the current task is being cancelled: a background loop that
    goes on after a Redis error must not go on after a cancel that a client's timeout turned
    into a TimeoutError (Python 3.11's asyncio.timeout can), or shutdown would wait for it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error
