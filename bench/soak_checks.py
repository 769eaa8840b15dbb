"""What the soak test checks, read from Redis and from the workers' logs.

A job's hash and result expire `RENDERQ_RESULT_TTL` seconds after it ends, so each job's end
is recorded by `Outcomes` as soon as it is seen, polling only the jobs still pending, in one
pipeline per round. The logs are read at the end: every `job_done` and `job_failed` line of
every worker that ever ran, killed ones included, counted per job id.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from renderq.job_tags import JobTags
from renderq.keys import Keys
from renderq.vocabulary import JobStatus

ENDED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})
ENDING_EVENTS = frozenset({"job_done", "job_failed"})
OTHER_EVENTS = frozenset({"job_already_ended", "job_skipped"})
# Keys of a job; once the TTL has passed none may be left (the stream itself stays).
JOB_KEY_PATTERNS = ("job", "result", "input", "idempotency")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as its hash said when first seen ended."""

    status: str
    error_code: str | None
    has_result: bool
    finished_at: float | None  # wall-clock time the worker stored the end
    attempts: int  # deliveries: more than 1 when a killed worker's job was reclaimed


@dataclass
class Outcomes:
    """The end of every accepted job; the ids still pending; the ones whose hash vanished
    before they ended (lost)."""

    keys: Keys = field(default_factory=Keys)
    pending: list[str] = field(default_factory=list)
    ended: dict[str, Outcome] = field(default_factory=dict)
    vanished: list[str] = field(default_factory=list)

    def add(self, job_ids: list[str]) -> None:
        self.pending += job_ids

    async def poll(self, redis: AsyncRedis) -> None:
        """Read status, error code and result presence of every pending job in one pipeline."""
        ids = list(self.pending)
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "status", "error_code", "finished_at", "attempts")
                # After the status: the result is written in the same script, never after it.
                pipe.exists(self.keys.result(job_id))
            replies = await pipe.execute()
        still = []
        for job_id, fields, exists in zip(ids, replies[::2], replies[1::2], strict=True):
            status, code, finished, attempts = (v.decode() if v else None for v in fields)
            if status is None:
                self.vanished.append(job_id)
            elif status in ENDED:
                at = float(finished) if finished else None
                tries = int(attempts or 0)
                self.ended[job_id] = Outcome(status, code, bool(exists), at, tries)
            else:
                still.append(job_id)
        self.pending = still

    def count(self, status: JobStatus) -> int:
        return sum(1 for outcome in self.ended.values() if outcome.status == status)

    def error_codes(self) -> Counter[str]:
        return Counter(o.error_code or "none" for o in self.ended.values() if o.status == "failed")

    def redelivered(self) -> int:
        """Jobs delivered more than once: how often the reclaim path was exercised."""
        return sum(1 for outcome in self.ended.values() if outcome.attempts > 1)

    def done_without_result(self) -> list[str]:
        return [i for i, o in self.ended.items() if o.status == "done" and not o.has_result]


@dataclass
class Endings:
    """Per job id, the ending events (`job_done`, `job_failed`) and the others
    (`job_already_ended`, `job_skipped`) found in the worker logs, with the log they are in."""

    events: defaultdict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    others: Counter[str] = field(default_factory=Counter)
    unreadable_lines: int = 0

    def endings(self, job_id: str) -> list[str]:
        return [event for event, _log in self.events.get(job_id, []) if event in ENDING_EVENTS]


def read_endings(log_dir: Path, ids_by_tag: dict[str, str]) -> Endings:
    """Every worker log's job events; a line cut short by SIGKILL is counted as unreadable.

    Logs name jobs by their tags (`renderq.job_tags`): `ids_by_tag` turns them back into the
    ids the soak accepted; a tag it does not know stays as it is.
    """
    found = Endings()
    for log in sorted(log_dir.glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            event = _job_event(line)
            if event is None:
                found.unreadable_lines += line.startswith("{") and not line.endswith("}")
                continue
            name, tag = event
            found.events[ids_by_tag.get(tag, tag)].append((name, log.name))
            if name in OTHER_EVENTS:
                found.others[name] += 1
    return found


def _job_event(line: str) -> tuple[str, str] | None:
    """(event, job tag) of a job event line; None for anything else."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    event, tag = record.get("event"), record.get("job")
    if event in ENDING_EVENTS | OTHER_EVENTS and isinstance(tag, str):
        return str(event), tag
    return None


def ids_by_tag(redis_url: str, job_ids: list[str]) -> dict[str, str]:
    """How the logs name each job: its tag under the deployment's key in Redis."""
    with Redis.from_url(redis_url, socket_timeout=5) as client:
        key = client.get(Keys().job_tag_key)
    if not isinstance(key, bytes):
        return {}
    tags = JobTags(key)
    return {tags.tag(job_id): job_id for job_id in job_ids}


@dataclass(frozen=True)
class EndingCheck:
    """Accepted jobs by how many times the logs say they ended; an ended job must say once,
    with the event its final status calls for."""

    never: list[str]  # ended in Redis, no ending event in any log
    more_than_once: list[str]
    wrong_event: list[str]  # one event, but job_done for a failed job or the reverse
    unknown_ids: int  # job ids in the logs that no accepted job has


def check_endings(outcomes: Outcomes, endings: Endings, accepted: list[str]) -> EndingCheck:
    never, more, wrong = [], [], []
    for job_id in accepted:
        seen = endings.endings(job_id)
        outcome = outcomes.ended.get(job_id)
        if len(seen) > 1:
            more.append(job_id)
        elif outcome is not None and not seen:
            never.append(job_id)
        elif outcome is not None and seen != [f"job_{outcome.status}"]:
            wrong.append(job_id)
    unknown = len(set(endings.events) - set(accepted))
    return EndingCheck(never, more, wrong, unknown)


def used_memory(redis_url: str) -> int:
    """Redis's own count of the bytes it has allocated (`INFO memory` used_memory)."""
    with Redis.from_url(redis_url, socket_timeout=5) as client:
        return int(client.info("memory")["used_memory"])


class MemorySampler:
    """Samples used_memory every `interval` seconds in a thread, keeping the peak; a sample
    that fails (Redis restarting) is skipped."""

    def __init__(self, redis_url: str, interval: float = 0.5) -> None:
        self.redis_url = redis_url
        self.interval = interval
        self.peak = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.peak = max(self.peak, used_memory(self.redis_url))
            except RedisError:
                continue


@dataclass(frozen=True)
class Leftovers:
    """What was left in Redis when the wait for expiry ended."""

    job_keys: dict[str, int]  # per pattern, keys still there
    dbsize: int
    remaining: list[str]  # every key left, job keys or not (the stream should be the only one)
    seconds: float
    stream_bytes: int  # MEMORY USAGE of the stream, consumer group included
    consumers: int  # consumers in the group: every worker that ever read, killed ones too
    clients: int  # connections Redis holds

    @property
    def clean(self) -> bool:
        return not any(self.job_keys.values())


def wait_for_expiry(redis_url: str, keys: Keys, timeout: float) -> Leftovers:
    """Poll until no key of any job is left (their TTL passed), or `timeout` seconds."""
    started = time.monotonic()
    with Redis.from_url(redis_url, socket_timeout=5) as client:
        while True:
            # SCAN touches the keys it meets, so an expired one is reclaimed on the spot.
            left = {p: _count(client, f"{keys.prefix}:{p}:*") for p in JOB_KEY_PATTERNS}
            waited = time.monotonic() - started
            if not any(left.values()) or waited > timeout:
                break
            time.sleep(1.0)
        remaining = sorted(key.decode() for key in client.scan_iter(count=1000))
        stream_bytes, consumers = _stream_size(client, keys)
        clients = int(client.info("clients")["connected_clients"])
        return Leftovers(
            left, int(client.dbsize()), remaining, waited, stream_bytes, consumers, clients
        )


def _stream_size(client: Redis, keys: Keys) -> tuple[int, int]:
    """Bytes the stream takes and consumers its group lists (0, 0 when there is none)."""
    size = client.memory_usage(keys.stream) or 0
    groups = client.xinfo_groups(keys.stream) if size else []
    return int(size), sum(int(group["consumers"]) for group in groups)


def _count(client: Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def wait_for_memory(redis_url: str, baseline: int, timeout: float) -> int:
    """used_memory once it is within 1 MiB of `baseline`, or after `timeout` seconds (freeing
    can lag a little behind the keys going away)."""
    deadline = time.monotonic() + timeout
    while True:
        memory = used_memory(redis_url)
        if memory <= baseline + MIB or time.monotonic() > deadline:
            return memory
        time.sleep(1.0)
