"""The worker loop: take a job, render it, store the result, acknowledge; stop cleanly.

Signal handlers only set a flag, checked between jobs: a first SIGTERM or SIGINT lets the job
in hand finish and be acknowledged, a second one aborts it (it stays pending in the stream and
is taken by another worker once this one's lease has expired, see `worker.reclaim`).

While Redis is unreachable the loop backs off and tries again; a job already rendered keeps
its result in hand until Redis takes it, so no render is lost to an outage.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from functools import partial
from typing import Final

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisFull
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from renderq.errors import ErrorCode, RenderqError
from renderq.job_tags import JobTags
from renderq.jobs import Job
from renderq.keys import Keys
from renderq.logs import log_event
from renderq.metrics import Increments
from renderq.queue_protocol import Delivery, Ending, JobFailure, JobField, QueueLimits
from renderq.replication import NotReplicated, ReplicaAcks
from renderq.settings import Settings
from renderq.vocabulary import JobKind, JobStatus
from worker.job_metrics import counts_for_end
from worker.lease import WorkerLease, memory_use
from worker.queue import (
    Idle,
    Taken,
    drop_delivery,
    end_job,
    ensure_group,
    load_input,
    load_job_tag_key,
    start_job,
    take_next_job,
    wait_for_work,
)
from worker.reclaim import OrphanFinder
from worker.sandbox import ConfinementError, Sandbox
from worker.stopping import StopSignals

logger = logging.getLogger("renderq.worker")

MIN_BACKOFF: Final = 0.25
MAX_BACKOFF: Final = 2.0
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, RedisFull)
# Tries again of a job's end that no replica confirmed, before the worker goes on without.
UNCONFIRMED_ENDS: Final = 5


class Worker:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        consumer: str | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.limits = QueueLimits.of(settings)
        self.consumer = consumer or settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        # Tells this run's deliveries from those of an earlier run under the same name.
        self.run_id = secrets.token_hex(4)
        self.stop = StopSignals(logger, "worker_stopping")
        self.jobs_done = 0
        self.started_at = time.time()
        # The tag of the job being rendered and since when, for the worker's report.
        self._in_hand: tuple[str, float] | None = None
        # Sandbox children already added to the metrics by an earlier end.
        self._children_counted = 0
        lease_ttl = settings.worker_lease_ttl
        self._claim_every = lease_ttl / 3
        self._next_claim = 0.0
        self.sandbox = sandbox or Sandbox(settings)
        self.tags = JobTags()
        self.acks = ReplicaAcks(settings.replica_ack_timeout_ms)
        self.lease = WorkerLease(redis, self.keys, self.consumer, lease_ttl)
        self.orphans = OrphanFinder(redis, self.keys, self.consumer, self.run_id, lease_ttl / 3)

    def run(self, burst: bool = False) -> None:
        """Take jobs until told to stop or a run limit is reached; with `burst`, until idle.

        Raises ConfinementError when the sandbox cannot be (or stops being) what it must:
        the job in hand then stays pending, for another worker to take.
        """
        if not self.sandbox.layers:
            self.sandbox.start()
        weakened = self.sandbox.weakened
        log_event(
            logger,
            "worker_started",
            consumer=self.consumer,
            sandbox=self.sandbox.layers,
            sandbox_weakened=sorted(weakened),
        )
        if weakened:
            log_event(logger, "sandbox_weakened", logging.WARNING, layers=weakened)
        try:
            self._loop(burst)
        finally:
            self.lease.stop()
            self.sandbox.close()
        log_event(logger, "worker_exited", consumer=self.consumer, jobs=self.jobs_done)

    def _loop(self, burst: bool) -> None:
        deadline = time.monotonic() + self.settings.worker_max_seconds
        backoff = MIN_BACKOFF
        while not self.stop.requested and self.jobs_done < self.settings.worker_max_jobs:
            if time.monotonic() >= deadline:
                break
            try:
                if not self.tags.ready:
                    self._prepare()
                if not self._step(burst):
                    break
            except _REDIS_DOWN as exc:
                log_event(
                    logger, "redis_unavailable", logging.WARNING, error=str(exc), retry_in=backoff
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if backoff > MIN_BACKOFF:
                log_event(logger, "redis_reconnected")
            backoff = MIN_BACKOFF

    def _prepare(self) -> None:
        """What the loop needs from Redis before its first job: the group, the tag key, and
        the lease (which carries this worker's sandbox report for `/healthz`)."""
        ensure_group(self.redis, self.keys)
        self.tags.load(load_job_tag_key(self.redis, self.keys))
        self.acks.observe(self.redis.info("replication"))
        self.lease.start(self.report)

    def report(self) -> str:
        """What the lease carries for `/healthz`, `/metrics` and the dashboard: the sandbox's
        layers, the jobs done, the job in hand and since when, the memory used."""
        job, since = self._in_hand or (None, None)
        return json.dumps(
            {
                "consumer": self.consumer,
                "sandbox": self.sandbox.layers,
                "started_at": self.started_at,
                "jobs_done": self.jobs_done,
                "job": job,
                "job_started_at": since,
                **memory_use(),
            }
        )

    def _step(self, burst: bool) -> bool:
        """Take and process one job; False when a burst run finds the queue empty."""
        taken = self._next_delivery()
        if taken is None:
            return not burst or self.orphans.suspects
        self.process(taken)
        return True

    def _next_delivery(self) -> Delivery | Taken | None:
        try:
            return self._take_delivery()
        except ResponseError as exc:
            if not any(code in str(exc) for code in ("NOGROUP", "UNBLOCKED")):
                raise
            # The stream or group is gone (a Redis without persistence restarted, or someone
            # deleted the stream while this worker waited on it): recreate it.
            ensure_group(self.redis, self.keys)
            return None

    def _take_delivery(self) -> Delivery | Taken | None:
        """An orphaned entry first (this worker's own, or a dead worker's), else a new one
        from the tenant whose turn it is, taken and started in one call; when there is none,
        one queued within `RENDERQ_WORKER_BLOCK_MS`."""
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._claim_every
            claimed = self.orphans.claim()
            if claimed is not None:
                self._next_claim = now  # there may be more
                return claimed
        taken = self._take()
        if isinstance(taken, Taken):
            return taken
        if not wait_for_work(self.redis, self.keys, taken, self.settings.worker_block_ms):
            return None
        again = self._take()
        return again if isinstance(again, Taken) else None  # another worker was first

    def _take(self) -> Taken | Idle:
        return take_next_job(self.redis, self.keys, self.limits, self.consumer, self.run_id)

    def process(self, taken: Delivery | Taken) -> None:
        """Render the job of an entry (started already, when `Taken`) and store its end."""
        if isinstance(taken, Taken):
            delivery, job = taken.delivery, taken.job
        else:
            delivery, job = taken, start_job(self.redis, self.keys, self.limits, taken)
        if job is None or job.status is not JobStatus.RUNNING:
            # Expired, cancelled, or ended by another worker after a reclaim.
            drop_delivery(self.redis, self.keys, delivery)
            status = "expired" if job is None else str(job.status)
            log_event(logger, "job_skipped", job=self.tags.tag(delivery.job_id), status=status)
            return
        started = time.perf_counter()
        self._in_hand = (self.tags.tag(job.id), time.time())
        rendered = job.attempts <= self.settings.max_attempts
        if not rendered:
            # Every earlier delivery died with its worker: this job is poison.
            poison = JobFailure(
                ErrorCode.TOO_MANY_ATTEMPTS,
                f"delivered {job.attempts} times; each time its worker died",
            )
            ending = Ending.failed(poison, dead_letter=True)
        else:
            ending = self._render(job)
        children = self.sandbox.children_started
        counted = counts_for_end(job, ending, rendered, children - self._children_counted)
        stored, replicated = self._end(delivery, ending, counted)
        if stored:
            self._children_counted = children
        self._in_hand = None
        self.jobs_done += 1
        failed = ending.fields[JobField.STATUS] == JobStatus.FAILED
        log_event(
            logger,
            ("job_failed" if failed else "job_done") if stored else "job_already_ended",
            job=self.tags.tag(job.id),
            engine=job.engine,
            attempts=job.attempts,
            error_code=ending.fields.get(JobField.ERROR_CODE),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if not replicated:
            self._confirm_end(delivery, ending)

    def _end(self, delivery: Delivery, ending: Ending, counted: Increments) -> tuple[bool, bool]:
        """Store how the job ended, trying again while Redis is away: the result in hand is
        not given up (a second signal still stops the worker). Whether this call stored it,
        and whether a replica confirmed it (when the primary has one)."""
        backoff = MIN_BACKOFF
        while True:
            try:
                return self._end_once(delivery, ending, counted), True
            except NotReplicated as exc:
                return bool(exc.result), False
            except _REDIS_DOWN as exc:
                self._log_retry("job_end_retried", delivery, exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _confirm_end(self, delivery: Delivery, ending: Ending) -> None:
        """Ask again until a replica confirms an end the primary has: the same end, stored
        again by the same delivery, changes nothing but is waited for. After a few tries the
        worker goes on; a replica that lags this long is the operator's to look at."""
        backoff = MIN_BACKOFF
        for _ in range(UNCONFIRMED_ENDS):
            time.sleep(backoff)
            try:
                self._end_once(delivery, ending)
                return
            except (NotReplicated, *_REDIS_DOWN) as exc:
                self._log_retry("job_end_unconfirmed", delivery, exc, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        log_event(
            logger, "job_end_not_replicated", logging.WARNING, job=self.tags.tag(delivery.job_id)
        )

    def _end_once(
        self, delivery: Delivery, ending: Ending, counted: Increments | None = None
    ) -> bool:
        """Store the end; `counted` is added only by the call that ends the job (a retry that
        finds its own end changes nothing)."""
        return end_job(self.redis, self.keys, delivery, ending, self.limits, self.acks, counted)

    def _log_retry(self, event: str, delivery: Delivery, error: Exception, delay: float) -> None:
        log_event(
            logger,
            event,
            logging.WARNING,
            job=self.tags.tag(delivery.job_id),
            error=str(error),
            retry_in=delay,
        )

    def _render(self, job: Job) -> Ending:
        """Render in the sandbox: how the job ends."""
        started = time.perf_counter()
        try:
            # Loaded by the sandbox just before it sends it: the worker holds no upload
            # while the child renders.
            upload = partial(load_input, self.redis, self.keys, job.id)
            image = self.sandbox.render(job, upload if job.kind is JobKind.IMAGE else None)
            return Ending.done(image, _ms_since(started))
        except RenderqError as exc:
            return Ending.failed(JobFailure(exc.code, exc.message), render_ms=_ms_since(started))
        except (RedisError, ConfinementError):
            raise  # not the job's fault: the entry stays pending and is taken again
        except Exception:
            logger.exception("render_crashed", extra={"fields": {"job": self.tags.tag(job.id)}})
            return Ending.failed(
                JobFailure(ErrorCode.RENDER_FAILED, "the renderer failed unexpectedly"),
                render_ms=_ms_since(started),
            )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
