"""A tap's state in Redis: its name in the set production copies jobs for, its own copy of
the job stream, its results and its comparisons, all under `Keys.tap_*`.

Nothing here touches production's stream, group, jobs, results, leases, metrics or events.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from redis import Redis
from redis.exceptions import ResponseError

from renderq.job_tags import as_bytes
from renderq.jobs import Job, is_job_id
from renderq.keys import Keys
from worker.tap.record import JobComparison

_TAP_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_GLOB: Final = re.compile(r"([*?\[\]\\])")
_DELETE_BATCH: Final = 500


class InvalidTapName(ValueError):
    """A tap name that cannot be part of a Redis key as is."""


class TapRemoved(Exception):
    """The tap's stream or group is gone: `python -m worker.tap remove` ran meanwhile."""


def tap_name(text: str) -> str:
    """`text`, checked to be a tap name: 1 to 64 letters, digits, `_`, `.` or `-`."""
    if _TAP_NAME.fullmatch(text) is None:
        raise InvalidTapName(f"{text!r} is not a tap name (1 to 64 of A-Z a-z 0-9 _ . -)")
    return text


@dataclass(frozen=True)
class Copy:
    """One entry of a tap's stream: a copy of a production entry, naming the job."""

    entry_id: str
    job_id: str | None  # None when the entry is gone (trimmed) or names no job


def register(redis: Redis, keys: Keys, name: str) -> None:
    """Make the tap's stream and group, then ask production for copies: in that order, so
    no copy is made before the group that reads it exists."""
    try:
        redis.xgroup_create(keys.tap_stream(name), keys.tap_group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    redis.sadd(keys.taps, name)


def read_copy(
    redis: Redis, keys: Keys, name: str, consumer: str, block_ms: int, pending: bool
) -> Copy | None:
    """The next copy for `consumer`: with `pending`, one it was given before but did not
    finish (at once, None when there is none); else a new one, waited for up to `block_ms`.
    Raises TapRemoved when the tap's stream or group is gone because the tap was removed
    (else, as after a failover that lost them, they are made again)."""
    try:
        reply: Any = redis.xreadgroup(
            keys.tap_group,
            consumer,
            {keys.tap_stream(name): "0" if pending else ">"},
            count=1,
            block=None if pending else block_ms,
        )
    except ResponseError as exc:
        # NOGROUP: gone before the read; UNBLOCKED: deleted while the read waited on it.
        if not any(code in str(exc) for code in ("NOGROUP", "UNBLOCKED")):
            raise
        if not is_registered(redis, keys, name):  # `remove` unregisters first
            raise TapRemoved(name) from exc
        register(redis, keys, name)
        return None
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            job_id = as_bytes((fields or {}).get(b"id", b"")).decode()
            return Copy(as_bytes(entry_id).decode(), job_id if is_job_id(job_id) else None)
    return None


def load_job(redis: Redis, keys: Keys, job_id: str) -> Job | None:
    """Production's job as it is now, read only; None once it has expired."""
    raw = redis.hgetall(keys.job(job_id))
    return Job.from_redis(raw) if raw else None


def store_result(redis: Redis, keys: Keys, name: str, job_id: str, image: bytes, ttl: int) -> None:
    redis.set(keys.tap_result(name, job_id), image, ex=ttl)


def record(
    redis: Redis, keys: Keys, name: str, copy: Copy, found: JobComparison | None, kept: int
) -> None:
    """Append the comparison (keeping about the last `kept`) and be done with the copy: it
    is acknowledged and deleted, so the stream holds only the copies still to do."""
    stream = keys.tap_stream(name)
    with redis.pipeline(transaction=True) as pipe:
        if found is not None:
            fields: dict[Any, Any] = found.to_fields()
            pipe.xadd(keys.tap_comparisons(name), fields, maxlen=kept, approximate=True)
        pipe.xack(stream, keys.tap_group, copy.entry_id)
        pipe.xdel(stream, copy.entry_id)
        pipe.execute()


def leave(redis: Redis, keys: Keys, name: str, consumer: str) -> None:
    """Drop this process from the tap's group; the tap stays registered for a restart."""
    try:
        redis.xgroup_delconsumer(keys.tap_stream(name), keys.tap_group, consumer)
    except ResponseError as exc:
        if not any(gone in str(exc) for gone in ("NOGROUP", "requires the key to exist")):
            raise  # else the tap was removed: nothing is left to leave


def comparisons(
    redis: Redis, keys: Keys, name: str, last: int | None = None
) -> list[JobComparison]:
    """The tap's comparisons, oldest first (only the `last` ones when given)."""
    key = keys.tap_comparisons(name)
    if last is None:
        entries: Any = redis.xrange(key)
    else:
        newest: Any = redis.xrevrange(key, count=last)
        entries = newest[::-1]
    return [JobComparison.from_fields(fields) for _entry_id, fields in entries]


def is_registered(redis: Redis, keys: Keys, name: str) -> bool:
    return bool(redis.sismember(keys.taps, name))


def remove(redis: Redis, keys: Keys, name: str) -> int:
    """Unregister the tap (production stops copying at once) and delete everything it
    stored: its stream, comparisons and results. How many keys were deleted."""
    redis.srem(keys.taps, name)
    doomed = [keys.tap_stream(name), keys.tap_comparisons(name), *_results(redis, keys, name)]
    batches = range(0, len(doomed), _DELETE_BATCH)
    return sum(int(redis.unlink(*doomed[at : at + _DELETE_BATCH])) for at in batches)


def _results(redis: Redis, keys: Keys, name: str) -> Iterator[str]:
    pattern = _GLOB.sub(r"\\\1", keys.tap_result(name, "")) + "*"
    for key in redis.scan_iter(match=pattern, count=_DELETE_BATCH):
        yield as_bytes(key).decode()
