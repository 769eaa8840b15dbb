"""The queue's protocol in Redis: the job hash's fields, and every script that changes a job.

A job lives in one hash (`Keys.job`); the stream carries only its id. Every change of state
is one Lua script, atomic in Redis: queue (with backpressure and an idempotency key),
cancel, start (one attempt per delivery; or take, which reads the next entry and starts it),
end (once, whoever asks twice), requeue (from the dead letters). The scripts, their KEYS and
ARGV, the hash's fields and the status values are all here, so the front
(`service/queue.py`, async) and the worker (`worker/queue.py`, sync) only build a
`ScriptCall` and run it.

Scripts are called by their SHA1 (EVALSHA): the text is sent once per Redis, when Redis says
it does not know it (NOSCRIPT: first use, or after a restart or a flush).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from string import Template
from typing import Any, Final

from renderq.keys import Keys, oldest_live_entry_id
from renderq.settings import Settings
from renderq.vocabulary import JobStatus


class JobField(StrEnum):
    """Every field of a job's hash."""

    ID = "id"
    KIND = "kind"
    ENGINE = "engine"
    FORMAT = "format"
    REQUEST = "request"
    STATUS = "status"
    QUEUED_AT = "queued_at"
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    ATTEMPTS = "attempts"
    ERROR_CODE = "error_code"
    ERROR_MESSAGE = "error_message"
    # The delivery (consumer and stream entry) a worker started the job under, and the one
    # that ended it: a script retried after a lost reply recognises its own earlier write.
    DELIVERY = "delivery"
    ENDED_BY = "ended_by"


ScriptArg = str | bytes | int | float


@dataclass(frozen=True)
class Script:
    """A Lua script; `$name` placeholders are filled with the fields and statuses above."""

    name: str
    template: str
    # A durable script's writes must reach a replica, when the primary has one, before its
    # caller goes on (see `renderq.replication`): they are what a failover must not lose.
    durable: bool = False
    source: str = field(init=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        words: dict[str, str] = {f"F_{key}": value for key, value in JobField.__members__.items()}
        words |= {f"S_{key}": value for key, value in JobStatus.__members__.items()}
        source = Template(self.template).substitute(words)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "sha", hashlib.sha1(source.encode()).hexdigest())


@dataclass(frozen=True)
class ScriptCall:
    """One call of a script: what EVALSHA needs."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[ScriptArg, ...]


# Put a job on the stream with its hash and upload living `ttl` seconds more: what queueing
# and requeueing share.
_QUEUE_FUNCTION: Final = """
local function put_on_stream(job_key, input_key, stream, ttl, min_id, job_id)
  redis.call('EXPIRE', job_key, ttl)
  if redis.call('EXISTS', input_key) == 1 then redis.call('EXPIRE', input_key, ttl) end
  redis.call('XADD', stream, 'MINID', '~', min_id, '*', 'id', job_id)
end
"""

# KEYS: job, stream, input, then the idempotency key if any (never an empty name: an ACL
#       that limits renderq to its own keys would refuse it)
# ARGV: ttl, max queued, oldest live entry id, job id, idempotency value, upload or '',
#       then the job's hash fields
ENQUEUE: Final = Script(
    "enqueue",
    durable=True,
    template=_QUEUE_FUNCTION
    + """
local ttl = tonumber(ARGV[1])
-- A call that finds its job already queued writes again what it found, changing nothing:
-- the WAIT after it then covers the first write too (a WAIT counts the connection's writes).
if KEYS[4] then
  local existing = redis.call('GET', KEYS[4])
  if existing then
    redis.call('SET', KEYS[4], existing, 'KEEPTTL')
    return {'existing', existing}
  end
end
-- A retry of this very call, whose reply was lost to a Redis restart: already queued.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], '$F_ID', ARGV[4])
  return {'queued', ARGV[4]}
end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {'full', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ttl) end
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[5], 'EX', ttl) end
put_on_stream(KEYS[1], KEYS[3], KEYS[2], ttl, ARGV[3], ARGV[4])
return {'queued', ARGV[4]}
""",
)

# Requeue a dead-lettered job as it was queued: a clean slate of attempts, and its hash and
# upload living a whole TTL again.
# KEYS: job, stream, dead-letter stream, input   ARGV: dead entry id, ttl, oldest live id,
#       job id, now
REQUEUE: Final = Script(
    "requeue",
    durable=True,
    template=_QUEUE_FUNCTION
    + """
redis.call('XDEL', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], '$F_ERROR_CODE') ~= 'too_many_attempts' then return 0 end
redis.call('HDEL', KEYS[1], '$F_ERROR_CODE', '$F_ERROR_MESSAGE', '$F_STARTED_AT',
           '$F_FINISHED_AT', '$F_DELIVERY', '$F_ENDED_BY')
redis.call('HSET', KEYS[1], '$F_STATUS', '$S_QUEUED', '$F_ATTEMPTS', 0, '$F_QUEUED_AT', ARGV[5])
put_on_stream(KEYS[1], KEYS[4], KEYS[2], tonumber(ARGV[2]), ARGV[3], ARGV[4])
return 1
""",
)

# Cancel only a job that no worker has started; answer the status it had.
# KEYS: job, input   ARGV: now, finished channel, job id
CANCEL: Final = Script(
    "cancel",
    durable=True,
    template="""
local status = redis.call('HGET', KEYS[1], '$F_STATUS')
if status == '$S_QUEUED' then
  redis.call('HSET', KEYS[1], '$F_STATUS', '$S_CANCELLED', '$F_FINISHED_AT', ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return status
""",
)

# Mark a job running only while it is queued or running (a redelivery): a cancelled or ended
# job stays as it is, and an expired one is not recreated without a TTL.
# A retry of this very delivery (its token already stored) changes nothing: one attempt.
# Its answer: the job's hash after the start, or nil when it expired.
_START_FUNCTION: Final = """
local function start_job(job_key, now, token)
  local status = redis.call('HGET', job_key, '$F_STATUS')
  if not status then return nil end
  local ours = redis.call('HGET', job_key, '$F_DELIVERY') == token
  if (status == '$S_QUEUED' or status == '$S_RUNNING') and not ours then
    redis.call('HSET', job_key, '$F_STATUS', '$S_RUNNING', '$F_STARTED_AT', now,
               '$F_DELIVERY', token)
    redis.call('HINCRBY', job_key, '$F_ATTEMPTS', 1)
  end
  return redis.call('HGETALL', job_key)
end
"""

# KEYS: job   ARGV: now, delivery token
START: Final = Script("start", _START_FUNCTION + "return start_job(KEYS[1], ARGV[1], ARGV[2])")

# What a busy worker does between two jobs, in one round trip instead of two: read the next
# new entry and start its job. A script cannot block, so nil means the stream had nothing
# new, and the caller then waits in a plain XREADGROUP. The job's key is built here from the
# entry, which a Redis Cluster would refuse; renderq runs on one primary.
# KEYS: stream   ARGV: group, consumer, now, run id, prefix of job keys
# Its answer: {entry id, entry fields, the job's hash after the start (or false)}, or nil.
TAKE: Final = Script(
    "take",
    _START_FUNCTION
    + """
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                         'STREAMS', KEYS[1], '>')
if not reply then return nil end
local entry_id, fields = reply[1][2][1][1], reply[1][2][1][2]
local job_id = ''
for i = 1, #fields, 2 do
  if fields[i] == 'id' then job_id = fields[i + 1] end
end
local token = ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. entry_id
return {entry_id, fields, start_job(ARGV[5] .. job_id, ARGV[3], token) or false}
""",
)

# End a job exactly once: only the first worker to finish a started job stores its outcome
# (a slow worker whose job was reclaimed finds it ended and only acknowledges). The entry is
# acknowledged and deleted in any case.
# A retry of a call whose reply was lost finds its own token in `ended_by` and says so.
# KEYS: job, result, input, stream, dead-letter stream
# ARGV: entry id, group, ttl, now, channel, job id, image or '', dead-letter min id or '',
#       delivery token, then the status fields
END: Final = Script(
    "end",
    durable=True,
    template="""
redis.call('XACK', KEYS[4], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[4], ARGV[1])
local status = redis.call('HGET', KEYS[1], '$F_STATUS')
-- Still queued: its start was lost to a failover (starts are not waited for), not ended.
if status ~= '$S_RUNNING' and status ~= '$S_QUEUED' then
  if redis.call('HGET', KEYS[1], '$F_ENDED_BY') == ARGV[9] then
    -- Ended by this very delivery: written again, so the WAIT after it covers the first end.
    redis.call('HSET', KEYS[1], '$F_ENDED_BY', ARGV[9])
    return 1
  end
  return 0
end
local ttl = tonumber(ARGV[3])
if ARGV[7] ~= '' then redis.call('SET', KEYS[2], ARGV[7], 'EX', ttl) end
redis.call('HSET', KEYS[1], '$F_FINISHED_AT', ARGV[4], '$F_ENDED_BY', ARGV[9],
           unpack(ARGV, 10))
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[8] ~= '' then
  -- Dead-lettered: keep the upload, so an operator can requeue the job.
  redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[8], '*', 'id', ARGV[6])
  redis.call('EXPIRE', KEYS[3], ttl)
else
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
""",
)

# Hand this worker one pending entry that nobody is working on: its own (left by an earlier
# run under the same name, or whose end a failover lost), or a dead worker's (its lease is
# gone). A dead worker with nothing pending is removed from the group, so the group does not
# grow with every worker that ever ran. The caller names the candidates; the leases are read
# here again, so a worker that came back in between keeps its job.
# KEYS: stream, then each candidate's lease   ARGV: group, this worker, then the candidates
CLAIM: Final = Script(
    "claim",
    template="""
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
for i = 2, #KEYS do
  local name = ARGV[i + 1]
  if name == me or redis.call('EXISTS', KEYS[i]) == 0 then
    while true do
      local pending = redis.call('XPENDING', stream, group, '-', '+', 1, name)
      if #pending == 0 then break end
      local claimed = redis.call('XCLAIM', stream, group, me, 0, pending[1][1])
      if #claimed > 0 and claimed[1][2] then return claimed[1] end
      -- The entry itself was deleted: nothing to run.
      redis.call('XACK', stream, group, pending[1][1])
    end
    if name ~= me then redis.call('XGROUP', 'DELCONSUMER', stream, group, name) end
  end
end
return nil
""",
)

# A worker that stops cleanly drops its lease, and leaves the group if it holds no entry.
# KEYS: stream, lease, index of workers   ARGV: group, this worker
RETIRE: Final = Script(
    "retire",
    template="""
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #pending == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return 1
""",
)

SCRIPTS: Final = (ENQUEUE, REQUEUE, CANCEL, START, TAKE, END, CLAIM, RETIRE)


@dataclass(frozen=True)
class QueueLimits:
    """What queueing is bounded by: how long a job lives, how many may wait."""

    ttl: int
    max_queued: int

    @classmethod
    def of(cls, settings: Settings) -> QueueLimits:
        return cls(settings.result_ttl, settings.max_queued)


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key and a digest of what it asked for under that key."""

    key: str
    digest: str

    @classmethod
    def of(cls, key: str, request: Mapping[str, Any], upload: bytes | None) -> Idempotency:
        """The digest covers the request's canonical JSON and the upload's bytes."""
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode())
        digest.update(upload or b"")
        return cls(key, digest.hexdigest())

    def stored(self, job_id: str) -> str:
        """What the idempotency key holds: the job it queued, and what was asked for."""
        return f"{job_id} {self.digest}"

    def same_request(self, stored: str) -> bool:
        return stored.partition(" ")[2] == self.digest


def enqueue_call(
    keys: Keys,
    fields: Mapping[str, str],
    limits: QueueLimits,
    upload: bytes | None,
    idempotency: Idempotency | None,
) -> ScriptCall:
    """Queue the job whose hash is `fields`. Its answer: `[b"queued", id]`, `[b"full", ""]`,
    or `[b"existing", stored]` (see `Idempotency.stored`) for a key already used."""
    job_id = fields[JobField.ID]
    flat = tuple(item for pair in fields.items() for item in pair)
    return ScriptCall(
        ENQUEUE,
        (
            keys.job(job_id),
            keys.stream,
            keys.input(job_id),
            *([keys.idempotency(idempotency.key)] if idempotency else []),
        ),
        (
            limits.ttl,
            limits.max_queued,
            oldest_live_entry_id(limits.ttl),
            job_id,
            idempotency.stored(job_id) if idempotency else "",
            upload or b"",
            *flat,
        ),
    )


def requeue_call(keys: Keys, entry_id: str, job_id: str, ttl: int, now: float) -> ScriptCall:
    return ScriptCall(
        REQUEUE,
        (keys.job(job_id), keys.stream, keys.dead_letters, keys.input(job_id)),
        (entry_id, ttl, oldest_live_entry_id(ttl), job_id, now),
    )


def cancel_call(keys: Keys, job_id: str, now: float) -> ScriptCall:
    return ScriptCall(
        CANCEL, (keys.job(job_id), keys.input(job_id)), (now, keys.finished_channel, job_id)
    )


def start_call(keys: Keys, delivery: Delivery, now: float) -> ScriptCall:
    """Its answer: the job's hash as a flat list after the start, or None if it expired."""
    return ScriptCall(START, (keys.job(delivery.job_id),), (now, delivery.token))


def take_call(keys: Keys, consumer: str, run: str, now: float) -> ScriptCall:
    """Take the next new entry for `consumer` and start its job (see `TAKE`); the token it
    starts the job under is the one `Delivery.token` gives."""
    return ScriptCall(TAKE, (keys.stream,), (keys.group, consumer, now, run, keys.job("")))


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed: an `ErrorCode` value and a message for the client."""

    code: str
    message: str


@dataclass(frozen=True)
class Ending:
    """How a delivered job ends: its final status fields, the image if done, whether it goes
    to the dead letters."""

    fields: Mapping[JobField, str]
    image: bytes | None = None
    dead_letter: bool = False

    @classmethod
    def done(cls, image: bytes) -> Ending:
        return cls({JobField.STATUS: JobStatus.DONE}, image)

    @classmethod
    def failed(cls, failure: JobFailure, dead_letter: bool = False) -> Ending:
        fields = {
            JobField.STATUS: JobStatus.FAILED,
            JobField.ERROR_CODE: failure.code,
            JobField.ERROR_MESSAGE: failure.message,
        }
        return cls(fields, dead_letter=dead_letter)


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to one consumer: the entry id to acknowledge and the job id."""

    entry_id: str
    job_id: str
    consumer: str
    # The worker process's run id: a worker restarted under the same consumer name that takes
    # its own entry back makes a new delivery, which counts as a new attempt.
    run: str = ""

    @property
    def token(self) -> str:
        """Names this delivery in the job hash, so a script retried after a lost reply (Redis
        restarted between running it and answering) recognises its own earlier write."""
        return f"{self.consumer} {self.run} {self.entry_id}"


def end_call(keys: Keys, delivery: Delivery, ending: Ending, ttl: int, now: float) -> ScriptCall:
    """End the job of `delivery`. Its answer: 1 when this call ended it (or ended it before
    and is being retried), 0 when another delivery had."""
    job_id = delivery.job_id
    flat = tuple(item for pair in ending.fields.items() for item in pair)
    return ScriptCall(
        END,
        (
            keys.job(job_id),
            keys.result(job_id),
            keys.input(job_id),
            keys.stream,
            keys.dead_letters,
        ),
        (
            delivery.entry_id,
            keys.group,
            ttl,
            now,
            keys.finished_channel,
            job_id,
            ending.image or b"",
            oldest_live_entry_id(ttl) if ending.dead_letter else "",
            delivery.token,
            *flat,
        ),
    )


def claim_call(keys: Keys, consumer: str, candidates: Sequence[str]) -> ScriptCall:
    """Claim one entry from `candidates` (this worker first, then workers seen dead). Its
    answer: `[entry id, [field, value, ...]]`, or None when there was nothing to take."""
    return ScriptCall(
        CLAIM,
        (keys.stream, *(keys.worker(name) for name in candidates)),
        (keys.group, consumer, *candidates),
    )


def retire_call(keys: Keys, consumer: str) -> ScriptCall:
    return ScriptCall(
        RETIRE, (keys.stream, keys.worker(consumer), keys.workers), (keys.group, consumer)
    )
