"""`python -m bench.soak`: renderq under chaos, checked for lost, doubled and leaked jobs.

Not part of the test suite; takes a few minutes. It starts a private cluster (Redis with AOF
like the deployment, on a fixed port so it can be restarted in place; the front; 3 workers)
with short lifetimes (RENDERQ_RESULT_TTL=30, RENDERQ_MAX_ATTEMPTS=5), then:

  1. records Redis used_memory before any job (the baseline);
  2. submits --jobs jobs (pillow text, imagemagick text, small image resizes) at --rate per
     second with --concurrency in flight, each under its own Idempotency-Key, retrying a
     failed submission with the same key for up to 60 s;
  3. meanwhile, every 1.5 to 4 s, SIGKILLs a random worker and starts another, or SIGKILLs
     a worker holding a job and restarts it under its name (as supervisord does), or (less
     often) restarts Redis, leaving it down up to --redis-down seconds, or freezes it
     (SIGSTOP) for up to twice that; with --failover, Redis is a primary, a replica and three
     Sentinels, and the primary is SIGKILLed instead (it comes back as a replica). The
     choices come from a random.Random seeded with --seed;
  4. once every submission is settled, stops the chaos and waits (at most 240 s) until every
     accepted job has ended, reading each job's hash straight from Redis;
  5. counts every job_done/job_failed line in every worker's log, killed workers included;
  6. waits for the TTL to remove every job key, and reads used_memory again.

It exits 0 only if no accepted job was lost (its hash vanished or it never ended), every ended
job ended exactly once according to the logs, every done job had its result, no job key
outlived its TTL, and (with one Redis) used_memory came back to within 1 MiB of the baseline.
It also reports the longest a client went without its 202 (503s or no answer) and the
longest from a worker's death to the next start of a job it held. The process logs
are kept (their folder is printed) when a check fails, and removed otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from bench.chaos import Chaos, ChaosCluster, ChaosCounts, wait_for_primary
from bench.report import say
from bench.soak_checks import (
    MIB,
    EndingCheck,
    Endings,
    Leftovers,
    MemorySampler,
    Outcomes,
    check_endings,
    ids_by_tag,
    read_endings,
    used_memory,
    wait_for_expiry,
    wait_for_memory,
)
from bench.soak_jobs import Submission, http_client, plan_jobs, small_png, submit_all
from renderq.keys import Keys
from renderq.vocabulary import FINAL_STATUSES, JobStatus

WORKERS = 3
KEYS = Keys()
FINAL = {str(status) for status in FINAL_STATUSES}
TTL = 30
SOAK_ENV = {
    "RENDERQ_RESULT_TTL": str(TTL),  # short, so memory can return to the baseline
    "RENDERQ_MAX_ATTEMPTS": "5",
    "RENDERQ_WORKER_BLOCK_MS": "500",
}
END_TIMEOUT = 240.0
EXPIRY_TIMEOUT = 90.0
POLL_INTERVAL = 0.25
PROGRESS_EVERY = 10.0
EXAMPLES = 5  # job ids shown per failed check


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=3000, help="jobs to submit")
    parser.add_argument("--rate", type=float, default=25.0, help="jobs submitted per second")
    parser.add_argument("--concurrency", type=int, default=16, help="submissions in flight")
    parser.add_argument("--seed", type=int, help="seed of the job mix and the chaos (random)")
    parser.add_argument(
        "--redis-down", type=float, default=2.0, help="longest pause of a Redis restart, s"
    )
    parser.add_argument(
        "--failover",
        action="store_true",
        help="a primary, a replica and three Sentinels; the chaos kills the primary",
    )
    args = parser.parse_args(argv)
    if min(args.jobs, args.concurrency) < 1 or args.rate <= 0 or args.redis_down < 0:
        parser.error("--jobs, --rate and --concurrency must be positive, --redis-down not < 0")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def progress(message: str) -> None:
    say("soak", message)


@dataclass(frozen=True)
class Memory:
    baseline: int
    peak: int
    end: int

    @property
    def back_to_baseline(self) -> bool:
        return self.end <= self.baseline + MIB


@dataclass(frozen=True)
class Report:
    """Everything the run measured, and the verdict on it."""

    seed: int
    submission: Submission
    outcomes: Outcomes
    endings: Endings
    ending_check: EndingCheck
    chaos: ChaosCounts
    restarts: OrphanRestarts
    leftovers: Leftovers
    memory: Memory
    seconds: float
    failover: bool

    @property
    def lost(self) -> list[str]:
        return self.outcomes.vanished + self.outcomes.pending

    def failures(self) -> dict[str, list[str]]:
        """Each failed check, with the job ids that failed it (empty when not about jobs)."""
        check = self.ending_check
        found = {
            "lost": self.lost,
            "ended without an ending event": check.never,
            "ended more than once": check.more_than_once,
            "ending event not matching the status": check.wrong_event,
            "done without result": self.outcomes.done_without_result(),
        }
        failed = {name: ids for name, ids in found.items() if ids}
        if self.submission.duplicate_ids:
            failed["one job id for two Idempotency-Keys"] = []
        if not self.leftovers.clean:
            failed["job keys left after the TTL"] = []
        # A promoted replica's memory is not the first primary's: compared with one Redis only.
        if not self.memory.back_to_baseline and not self.failover:
            failed["memory not back to baseline"] = []
        return failed


@dataclass
class OrphanRestarts:
    """For each job a killed worker held, the seconds from the kill to its next start."""

    seconds: dict[str, float] = field(default_factory=dict)
    ended_before: int = 0  # ended just before its worker's death: nothing to start again
    _done: set[int] = field(default_factory=set)  # indexes into ChaosCounts.orphans

    async def poll(self, redis: AsyncRedis, orphans: list[tuple[float, str]]) -> None:
        todo = [(n, *orphan) for n, orphan in enumerate(orphans) if n not in self._done]
        async with redis.pipeline(transaction=False) as pipe:
            for _n, _killed_at, job_id in todo:
                pipe.hmget(KEYS.job(job_id), "started_at", "status")
            replies = await pipe.execute()
        for (n, killed_at, job_id), (started, status) in zip(todo, replies, strict=True):
            if started is not None and float(started) > killed_at:
                self.seconds[job_id] = float(started) - killed_at
                self._done.add(n)
            elif status is None or status.decode() in FINAL:
                self.ended_before += 1
                self._done.add(n)

    @property
    def longest(self) -> float:
        return max(self.seconds.values(), default=0.0)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds.values()) if self.seconds else 0.0


class Tracker:
    """Follows the accepted jobs until they end, and says how the run goes now and then."""

    def __init__(
        self, cluster: ChaosCluster, submission: Submission, total: int, chaos: Chaos
    ) -> None:
        self.cluster = cluster
        self.submission = submission
        self.total = total
        self.chaos = chaos
        self.outcomes = Outcomes()
        self.restarts = OrphanRestarts()
        self.started = time.monotonic()
        self._seen = 0
        self._last_progress = self.started

    async def poll(self) -> None:
        """Take in newly accepted ids and read the pending jobs, and the jobs of killed
        workers, from the current primary; a Redis that is restarting or failing over is
        simply read again next round."""
        self.outcomes.add(self.submission.job_ids[self._seen :])
        self._seen = len(self.submission.job_ids)
        with contextlib.suppress(RedisError, OSError):
            url = await asyncio.to_thread(lambda: self.cluster.redis_url)
            async with AsyncRedis.from_url(url, socket_timeout=5) as redis:
                await self.outcomes.poll(redis)
                await self.restarts.poll(redis, self.chaos.counts.orphans)
        if time.monotonic() - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = time.monotonic()
            self._say_progress()

    def _say_progress(self) -> None:
        counts = self.chaos.counts
        progress(
            f"{time.monotonic() - self.started:.0f} s: "
            f"{self.submission.finished}/{self.total} submitted, "
            f"{len(self.submission.job_ids)} accepted, {len(self.outcomes.ended)} ended, "
            f"{len(self.outcomes.pending)} pending; "
            f"{counts.worker_kills} worker kills, {counts.redis_restarts} Redis restarts, "
            f"{counts.redis_freezes} freezes, {counts.primary_kills} primary kills"
        )


async def load_and_track(
    cluster: ChaosCluster, args: argparse.Namespace, chaos: Chaos, rng: random.Random
) -> Tracker:
    """Submit every job while tracking them; stop the chaos once all are submitted, then
    track until every accepted job has ended or `END_TIMEOUT` has passed."""
    requests = plan_jobs(args.jobs, rng, small_png())
    submission = Submission()
    tracker = Tracker(cluster, submission, args.jobs, chaos)
    async with http_client(cluster.base_url, args.concurrency) as client:
        submitting = asyncio.create_task(
            submit_all(client, requests, args.concurrency, args.rate, submission)
        )
        try:
            while not submitting.done():
                await asyncio.sleep(POLL_INTERVAL)
                await tracker.poll()
            await submitting  # re-raise whatever stopped the submission
        finally:
            submitting.cancel()
        progress("every job submitted: chaos stops; waiting for the accepted jobs to end")
        await asyncio.to_thread(chaos.stop)
        await _track_until_ended(tracker)
    return tracker


async def _track_until_ended(tracker: Tracker) -> None:
    deadline = time.monotonic() + END_TIMEOUT
    await tracker.poll()
    while tracker.outcomes.pending and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL)
        await tracker.poll()


def run(cluster: ChaosCluster, args: argparse.Namespace) -> Report:
    """Start the cluster, run the load under chaos, then check and measure everything."""
    started = time.monotonic()
    rng = random.Random(args.seed)
    redis = "a primary, a replica, 3 Sentinels" if args.failover else "Redis"
    progress(f"seed {args.seed}; starting {redis} (AOF), the front and {WORKERS} workers")
    cluster.start_redis()
    cluster.start_front()
    cluster.start_workers(WORKERS)
    baseline = used_memory(cluster.redis_url)
    sampler = MemorySampler(cluster.redis_url)
    chaos = Chaos(cluster, random.Random(rng.random()), redis_down=args.redis_down)
    progress(f"submitting {args.jobs} jobs at {args.rate:g}/s, {args.concurrency} in flight")
    sampler.start()
    chaos.start()
    try:
        tracker = asyncio.run(load_and_track(cluster, args, chaos, rng))
    finally:
        chaos.stop()
        sampler.stop()
    seconds = time.monotonic() - started
    wait_for_primary(cluster)
    progress(f"waiting up to {EXPIRY_TIMEOUT:.0f} s for the TTL to remove every job key")
    leftovers = wait_for_expiry(cluster.redis_url, Keys(), EXPIRY_TIMEOUT)
    end = wait_for_memory(cluster.redis_url, baseline, max(5.0, EXPIRY_TIMEOUT - leftovers.seconds))
    # Read only now: a worker logs a job's end just after storing it, so the last lines may
    # still be on their way when the last job is seen ended.
    endings = read_endings(
        cluster.log_dir, ids_by_tag(cluster.redis_url, tracker.submission.job_ids)
    )
    return Report(
        seed=args.seed,
        submission=tracker.submission,
        outcomes=tracker.outcomes,
        endings=endings,
        ending_check=check_endings(tracker.outcomes, endings, tracker.submission.job_ids),
        chaos=chaos.counts,
        restarts=tracker.restarts,
        leftovers=leftovers,
        memory=Memory(baseline, max(baseline, sampler.peak), end),
        seconds=seconds,
        failover=args.failover,
    )


def summary(report: Report, jobs: int) -> list[str]:
    """The `name: value` lines printed at the end."""
    sub, out, check = report.submission, report.outcomes, report.ending_check
    kinds = _counted(Counter(sub.kinds.values()))
    away = max(report.chaos.redis_away_seconds, default=0.0)
    failures = report.failures()
    return [
        f"seed: {report.seed}",
        f"jobs: {jobs}",
        f"accepted: {len(sub.job_ids)} ({kinds}; {sub.accepted_after_retry} after a retry)",
        f"not accepted: {sub.not_accepted} (gave up after 60 s of failed submissions)",
        f"refused: {sum(sub.refused.values())} {_counted(sub.refused)}".rstrip(),
        f"submission retries: {sum(sub.retries.values())} {_counted(sub.retries)}".rstrip(),
        f"done: {out.count(JobStatus.DONE)}",
        f"failed: {out.count(JobStatus.FAILED)} {_counted(out.error_codes())}".rstrip(),
        f"cancelled: {out.count(JobStatus.CANCELLED)}",
        f"redelivered (attempts > 1): {out.redelivered()}",
        f"lost: {len(report.lost)} (hash vanished {len(out.vanished)}, "
        f"never ended {len(out.pending)})",
        f"ended not exactly once: {len(check.never) + len(check.more_than_once)} "
        f"(no ending event {len(check.never)}, more than one {len(check.more_than_once)}; "
        f"event not matching status {len(check.wrong_event)})",
        f"done without result: {len(out.done_without_result())}",
        f"duplicate job ids: {sub.duplicate_ids}",
        f"other job events: {_counted(report.endings.others) or 'none'}; "
        f"job ids not accepted: {check.unknown_ids}; "
        f"log lines cut short: {report.endings.unreadable_lines}",
        f"longest without a 202 (503s or no answer) for one client: {sub.longest_refusal:.2f} s",
        f"worker kills: {report.chaos.worker_kills} "
        f"({report.chaos.busy_worker_kills} mid-job, restarted under their name)",
        f"jobs held by killed workers: {len(report.chaos.orphans)}; started again "
        f"{len(report.restarts.seconds)}, after longest {report.restarts.longest:.2f} s, "
        f"median {report.restarts.median:.2f} s (ended just before the kill: "
        f"{report.restarts.ended_before})",
        f"redis restarts: {report.chaos.redis_restarts}, freezes: "
        f"{report.chaos.redis_freezes} (longest away {away:.2f} s)",
        f"primary kills (failover): {report.chaos.primary_kills}",
        f"workers exited by themselves: {report.chaos.worker_exits}",
        f"keys left after TTL: {_keys_left(report.leftovers)}",
        f"redis at the end: {report.leftovers.clients} clients; stream "
        f"{report.leftovers.stream_bytes} bytes, {report.leftovers.consumers} consumers in its "
        "group",
        f"redis used_memory baseline: {_mib(report.memory.baseline)}",
        f"redis used_memory peak: {_mib(report.memory.peak)}",
        f"redis used_memory end: {_mib(report.memory.end)} "
        f"({(report.memory.end - report.memory.baseline) / MIB:+.2f} MiB; back to baseline: "
        f"{'yes' if report.memory.back_to_baseline else 'no'})",
        f"duration: {report.seconds:.1f} s (until every job ended; then TTL wait "
        f"{report.leftovers.seconds:.1f} s)",
        f"result: {'FAIL (' + ', '.join(failures) + ')' if failures else 'PASS'}",
    ]


def evidence(report: Report) -> list[str]:
    """For each failed check, a few job ids with their final status, every log event about
    them, and the chaos action nearest to their end."""
    lines = []
    for name, job_ids in report.failures().items():
        for job_id in job_ids[:EXAMPLES]:
            lines.append(f"  {name}: {job_id}: {_job_story(report, job_id)}")
    return lines


def _job_story(report: Report, job_id: str) -> str:
    """One job's evidence: its status, what the logs say, and how near its end was to a kill
    or restart (an end stored a moment before a SIGKILL may never reach its worker's log)."""
    events = report.endings.events.get(job_id, [])
    said = ", ".join(f"{event} in {log}" for event, log in events) or "no event"
    outcome = report.outcomes.ended.get(job_id)
    if outcome is None:
        return f"never seen ended; logs: {said}"
    status = f"{outcome.status} {outcome.error_code or ''}".strip()
    story = f"status {status}; logs: {said}"
    ended_at = outcome.finished_at
    if ended_at is not None and report.chaos.actions:
        at, action = min(report.chaos.actions, key=lambda a: abs(a[0] - ended_at))
        gap_ms = (ended_at - at) * 1000  # negative: it ended just before
        story += f"; ended {gap_ms:+.1f} ms from the nearest chaos action: {action}"
    return story


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def _keys_left(left: Leftovers) -> str:
    shown = ", ".join(left.remaining[:10]) or "none"
    more = f" and {len(left.remaining) - 10} more" if len(left.remaining) > 10 else ""
    return f"{shown}{more} (dbsize {left.dbsize}, after {left.seconds:.1f} s)"


def _mib(size: int) -> str:
    return f"{size / MIB:.2f} MiB ({size} bytes)"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    progress("terminated; stopping every process it started")
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log_dir = Path(tempfile.mkdtemp(prefix="renderq-soak-"))
    cluster = ChaosCluster(log_dir, SOAK_ENV, failover=args.failover)
    passed = False
    try:
        report = run(cluster, args)
        passed = not report.failures()
        print("\n".join(summary(report, args.jobs) + evidence(report)), flush=True)
    except KeyboardInterrupt:
        progress("interrupted; every process it started is stopped")
        return 130
    finally:
        cluster.close()
        if passed:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"logs: {log_dir}", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
