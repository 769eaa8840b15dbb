"""The tap's loop: take a copy of a new job, render it with this code, wait for production's
end, compare the two images in the sandbox, record the comparison.

The tap reads production's job hash, upload and result and writes nothing of production's:
it never starts, ends or acknowledges a production job, holds no lease, and reads only its
own stream through its own group. It may lag, and its capped stream then drops the oldest
copies; production never waits for it. Signals are handled as the worker handles them: a
first SIGTERM or SIGINT finishes the job in hand, a second one abandons it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from functools import partial
from typing import Final

from redis import Redis
from redis.exceptions import RedisError

from renderq.errors import RenderqError
from renderq.job_tags import JobTags
from renderq.jobs import Job
from renderq.keys import Keys
from renderq.logs import log_event
from renderq.settings import Settings
from renderq.vocabulary import JobKind, JobStatus
from worker.comparison import PixelComparison
from worker.loop import MAX_BACKOFF, MIN_BACKOFF
from worker.queue import load_input, load_job_tag_key
from worker.sandbox import Sandbox
from worker.stopping import StopSignals
from worker.tap import store
from worker.tap.record import JobComparison, Side
from worker.tap.store import TapRemoved

logger = logging.getLogger("renderq.worker.tap")

# Between two looks at whether production has ended the job: short at first, since
# production usually ends it while the tap renders.
_FIRST_LOOK: Final = 0.01
_LONGEST_LOOK: Final = 0.25


class Tap:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        name: str,
        engine: str | None = None,
        sandbox: Sandbox | None = None,
        consumer: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.name = name
        self.engine = engine  # renders every job with this engine, whatever the job asked
        self.consumer = consumer or settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.sandbox = sandbox or Sandbox(settings)
        self.tags = JobTags()
        self.stop = StopSignals(logger, "tap_stopping", tap=self.name)
        self.jobs_done = 0
        self._pending = True  # look at copies given to this consumer but not finished first

    def run(self) -> None:
        """Compare jobs until told to stop, or until the tap is removed. Raises
        ConfinementError as the worker does."""
        if not self.sandbox.layers:
            self.sandbox.start()
        try:
            self._loop()
        except TapRemoved:
            log_event(logger, "tap_removed", logging.WARNING, tap=self.name)
        finally:
            self._leave()
            self.sandbox.close()
        log_event(logger, "tap_exited", tap=self.name, jobs=self.jobs_done)

    def _loop(self) -> None:
        backoff = MIN_BACKOFF
        while not self.stop.requested:
            try:
                if not self.tags.ready:
                    self._prepare()
                self._step()
            except RedisError as exc:
                log_event(logger, "redis_unavailable", logging.WARNING, error=str(exc))
                self._pending = True  # a copy in hand stays pending: it is taken again
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF

    def _prepare(self) -> None:
        """Register (from here on production copies every new job) and load the tag key."""
        store.register(self.redis, self.keys, self.name)
        self.tags.load(load_job_tag_key(self.redis, self.keys))
        log_event(
            logger,
            "tap_started",
            tap=self.name,
            engine=self.engine,
            consumer=self.consumer,
            sandbox=self.sandbox.layers,
        )

    def _step(self) -> None:
        """Compare the next copy, if one comes within `RENDERQ_WORKER_BLOCK_MS`."""
        block_ms = self.settings.worker_block_ms
        args = (self.redis, self.keys, self.name, self.consumer, block_ms)
        copy = store.read_copy(*args, pending=self._pending)
        if copy is None and self._pending:
            self._pending = False
            copy = store.read_copy(*args, pending=False)
        if copy is None:
            return
        found = self.process(copy.job_id) if copy.job_id is not None else None
        store.record(self.redis, self.keys, self.name, copy, found, self.settings.tap_max)

    def process(self, job_id: str) -> JobComparison | None:
        """Render the job, wait for production's end, compare; None for a job production
        will not render (expired or cancelled before the tap saw it)."""
        job = store.load_job(self.redis, self.keys, job_id)
        if job is None or job.status is JobStatus.CANCELLED:
            status = "expired" if job is None else str(job.status)
            log_event(logger, "tap_job_skipped", job=self.tags.tag(job_id), status=status)
            return None
        mine, image = self._render(job)
        if image is not None:
            ttl = self.settings.result_ttl
            store.store_result(self.redis, self.keys, self.name, job.id, image, ttl)
        production, theirs = self._production(job)
        found = self._compare(job, production, theirs, mine, image)
        self.jobs_done += 1
        self._log(found)
        return found

    def _render(self, job: Job) -> tuple[Side, bytes | None]:
        """This code's outcome for the job, on the tap's engine if it has one."""
        if self.engine is not None:
            request = {**job.request, "engine": self.engine}
            job = dataclasses.replace(job, engine=self.engine, request=request)
        upload = partial(load_input, self.redis, self.keys, job.id)
        started = time.perf_counter()
        try:
            image = self.sandbox.render(job, upload if job.kind is JobKind.IMAGE else None)
        except RenderqError as exc:
            return Side(job.engine, JobStatus.FAILED, exc.code, ms=_ms_since(started)), None
        return Side(job.engine, JobStatus.DONE, ms=_ms_since(started)), image

    def _production(self, job: Job) -> tuple[Side, bytes | None]:
        """Production's outcome, once it has ended the job or after twice the render
        timeout, and its image if it has one."""
        ended = self._wait_for_end(job.id)
        if ended is None:
            return Side(job.engine, "expired"), None
        ms = None
        if ended.finished_at is not None and ended.started_at is not None:
            ms = (ended.finished_at - ended.started_at) * 1000
        side = Side(ended.engine, ended.status, ended.error_code, ms=ms)
        if ended.status is not JobStatus.DONE:
            return side, None
        data = self.redis.get(self.keys.result(job.id))
        return side, data.encode() if isinstance(data, str) else data

    def _wait_for_end(self, job_id: str) -> Job | None:
        deadline = time.monotonic() + 2 * self.settings.render_timeout
        pause = _FIRST_LOOK
        while True:
            job = store.load_job(self.redis, self.keys, job_id)
            left = deadline - time.monotonic()
            if job is None or job.is_final or left <= 0:
                return job
            time.sleep(min(pause, left))
            pause = min(pause * 2, _LONGEST_LOOK)

    def _compare(
        self,
        job: Job,
        production: Side,
        theirs: bytes | None,
        mine: Side,
        image: bytes | None,
    ) -> JobComparison:
        """Both sides, with their images as the sandbox decoded them and the difference."""
        found = JobComparison(self.tags.tag(job.id), str(job.kind), production, mine)
        if theirs is None and image is None:
            return found
        try:
            pixels = self.sandbox.compare(theirs, image)
        except RenderqError as exc:
            return dataclasses.replace(found, compare_error=str(exc.code))
        return _with_pixels(found, pixels)

    def _log(self, found: JobComparison) -> None:
        log_event(
            logger,
            "tap_job_compared",
            tap=self.name,
            job=found.job,
            kind=found.kind,
            production_engine=found.production.engine,
            tap_engine=found.tap.engine,
            production_status=found.production.status,
            tap_status=found.tap.status,
            same_size=found.same_size,
            same_format=found.same_format,
            diff_mean=found.diff_mean,
            diff_max=found.diff_max,
            duration_ms=found.tap.ms,
        )

    def _leave(self) -> None:
        try:
            store.leave(self.redis, self.keys, self.name, self.consumer)
        except RedisError as exc:  # it is only forgotten later: the tap stays correct
            log_event(logger, "tap_leave_failed", logging.WARNING, error=str(exc))


def _with_pixels(found: JobComparison, pixels: PixelComparison) -> JobComparison:
    return dataclasses.replace(
        found,
        production=dataclasses.replace(found.production, image=pixels.first),
        tap=dataclasses.replace(found.tap, image=pixels.second),
        diff_mean=pixels.diff_mean,
        diff_max=pixels.diff_max,
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
