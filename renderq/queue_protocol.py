"""The queue's protocol in Redis: the job hash's fields, and every script that changes a job.

A job lives in one hash (`Keys.job`); its tenant's stream carries only its id. Every change
of state is one Lua script, atomic in Redis: queue (with backpressure, the tenant's own cap
and an idempotency key), cancel, start (one attempt per delivery; or take, which picks the
tenant whose turn it is, reads its next entry and starts it),
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

from renderq.keys import SERIES_SECONDS, Keys, oldest_live_entry_id
from renderq.metrics import Increments
from renderq.settings import Settings
from renderq.tenants import DEFAULT_TENANT
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
    # The job's number in the order jobs were put on the stream (see `Keys.queued_seq`), and
    # its entry there, which a cancel deletes so that the queue's length stays true.
    SEQ = "seq"
    ENTRY = "entry"
    # The tenant the job belongs to (see `renderq.tenants`).
    TENANT = "tenant"


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


# What every script that changes a job may record besides: its event on the events stream
# (named by the job's tag, computed as `renderq.job_tags` does), and counts added to the
# metrics hash (`Increments.encoded`). `E` holds the recording keys and arguments of a call,
# and the queue's shared keys: the tenants taking turns, the wake stream, and the default
# tenant's stream and counters, from which `of_tenant` names any tenant's (as `Keys` does).
_RECORD_FUNCTIONS: Final = """
local RECORDING_KEYS, RECORDING_ARGS = 9, 7
local function recording(first_key, first_arg)
  local k, a = first_key, first_arg
  return {metrics = KEYS[k], events = KEYS[k + 1], tag_key = KEYS[k + 2],
          queued_seq = KEYS[k + 3], taps = KEYS[k + 4], tenants = KEYS[k + 5],
          wake = KEYS[k + 6], stream = KEYS[k + 7], started_seq = KEYS[k + 8],
          events_max = ARGV[a], now = ARGV[a + 1], tap_head = ARGV[a + 2],
          tap_tail = ARGV[a + 3], tap_max = ARGV[a + 4], default_tenant = ARGV[a + 5],
          group = ARGV[a + 6]}
end
-- A job hash written before tenants existed has no tenant: it is the default tenant's.
local function of_tenant(E, key, tenant)
  if not tenant or tenant == E.default_tenant then return key end
  return key .. ':' .. tenant
end
-- Every tenant whose stream may hold entries: the tenants taking turns, and the default
-- tenant, whose stream a front of an earlier version may still fill.
local function all_tenants(E)
  local tenants = redis.call('ZRANGE', E.tenants, 0, -1)
  if not redis.call('ZSCORE', E.tenants, E.default_tenant) then
    table.insert(tenants, 1, E.default_tenant)
  end
  return tenants
end
-- Jobs waiting or running in all tenants' streams.
local function queued_in_all(E)
  local total = 0
  for _, tenant in ipairs(all_tenants(E)) do
    total = total + redis.call('XLEN', of_tenant(E, E.stream, tenant))
  end
  return total
end
-- A tenant's turn in the round: Redis's own clock in microseconds, the same for every
-- caller whatever its clock says.
local function turn_now()
  local time = redis.call('TIME')
  return time[1] .. string.format('%06d', tonumber(time[2]))
end
-- Recording never fails the change it records (a script that stops half way keeps its
-- writes): a counter or key it cannot add to, say one another version wrote, is skipped.
local function emit(E, job_key, job_id, event, worker, duration_ms, code)
  if E.events_max == '0' then return end
  local secret = redis.pcall('GET', E.tag_key)
  local tag = '-'
  if type(secret) == 'string' then
    tag = string.sub(redis.sha1hex(secret .. ':' .. job_id), 1, 16)
  end
  local job = redis.call('HMGET', job_key, '$F_KIND', '$F_ENGINE', '$F_ATTEMPTS')
  redis.pcall('XADD', E.events, 'MAXLEN', '~', E.events_max, '*', 'event', event, 'job', tag,
              'kind', job[1] or '', 'engine', job[2] or '', 'worker', worker,
              'attempt', job[3] or '0', 'duration_ms', duration_ms, 'code', code, 'at', E.now)
end
local function add_metrics(E, encoded)
  if encoded == '' then return end
  for sample, by in pairs(cjson.decode(encoded)) do
    redis.pcall('HINCRBY', E.metrics, sample, by)
  end
end
"""

# Put a job on its tenant's stream (created with the workers' group on its first job) with
# its hash and upload living `ttl` seconds more, number it in its tenant's order, make the
# tenant take turns, wake an idle worker, and copy the job to every tap's own stream (see
# `worker.tap`): what queueing and requeueing share. A tenant that had no work joins the round
# at its start (turn 0), as fair queueing serves a new flow first: a tenant with a few jobs
# now and then is served at once, and one cannot gain by it, since it only happens when its
# stream was empty.
_QUEUE_FUNCTION: Final = (
    _RECORD_FUNCTIONS
    + """
local function put_on_stream(E, job_key, input_key, tenant, ttl, min_id, job_id)
  local stream = of_tenant(E, E.stream, tenant)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, E.group, '0', 'MKSTREAM')
  end
  redis.call('EXPIRE', job_key, ttl)
  if redis.call('EXISTS', input_key) == 1 then redis.call('EXPIRE', input_key, ttl) end
  local entry = redis.call('XADD', stream, 'MINID', '~', min_id, '*', 'id', job_id)
  local seq = redis.call('INCR', of_tenant(E, E.queued_seq, tenant))
  redis.call('HSET', job_key, '$F_SEQ', seq, '$F_ENTRY', entry)
  redis.call('ZADD', E.tenants, 'NX', 0, tenant)
  redis.call('XADD', E.wake, 'MAXLEN', '~', 100, '*', 'tenant', tenant)
  for _, tap in ipairs(redis.call('SMEMBERS', E.taps)) do
    redis.call('XADD', E.tap_head .. tap .. E.tap_tail, 'MAXLEN', '~', E.tap_max, '*',
               'id', job_id)
  end
  return seq
end
"""
)

# Both limits are checked here, atomically, so they hold whatever number of fronts queue:
# the tenant's own cap of waiting jobs (not counting those running) first, since only that
# tenant need slow down, then the whole queue's.
# KEYS: job, input, then the recording keys (see `_recording`), then the idempotency key if
#       any (never an empty name: an ACL that limits renderq to its own keys would refuse it)
# ARGV: ttl, max queued, oldest live entry id, job id, idempotency value, upload or '',
#       metrics to add, tenant, tenant's max queued (0: no cap), then the recording
#       arguments, then the job's hash fields
# Its answer: {'queued', id, seq, started seq, tenants taking turns}, {'full', ''},
# {'tenant_full', ''} or {'existing', stored}; the numbers are the tenant's own.
ENQUEUE: Final = Script(
    "enqueue",
    durable=True,
    template=_QUEUE_FUNCTION
    + """
local E = recording(3, 10)
local idempotency = KEYS[3 + RECORDING_KEYS]
local ttl = tonumber(ARGV[1])
local tenant, tenant_max = ARGV[8], tonumber(ARGV[9])
-- A call that finds its job already queued writes again what it found, changing nothing:
-- the WAIT after it then covers the first write too (a WAIT counts the connection's writes).
if idempotency then
  local existing = redis.call('GET', idempotency)
  if existing then
    redis.call('SET', idempotency, existing, 'KEEPTTL')
    return {'existing', existing}
  end
end
local started = tonumber(redis.call('GET', of_tenant(E, E.started_seq, tenant)) or 0)
-- A retry of this very call, whose reply was lost to a Redis restart: already queued.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], '$F_ID', ARGV[4])
  local seq = tonumber(redis.call('HGET', KEYS[1], '$F_SEQ') or 0)
  return {'queued', ARGV[4], seq, started, redis.call('ZCARD', E.tenants)}
end
if tenant_max > 0 then
  local stream = of_tenant(E, E.stream, tenant)
  local waiting = redis.call('XLEN', stream)
  if waiting >= tenant_max then
    -- A stream without its group (deleted by hand) has nothing running.
    local pending = redis.pcall('XPENDING', stream, E.group)
    if type(pending) == 'table' and pending[1] then waiting = waiting - pending[1] end
    if waiting >= tenant_max then return {'tenant_full', ''} end
  end
end
if queued_in_all(E) >= tonumber(ARGV[2]) then return {'full', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 10 + RECORDING_ARGS))
if ARGV[6] ~= '' then redis.call('SET', KEYS[2], ARGV[6], 'EX', ttl) end
if idempotency then redis.call('SET', idempotency, ARGV[5], 'EX', ttl) end
local seq = put_on_stream(E, KEYS[1], KEYS[2], tenant, ttl, ARGV[3], ARGV[4])
add_metrics(E, ARGV[7])
emit(E, KEYS[1], ARGV[4], 'queued', '', 0, '')
return {'queued', ARGV[4], seq, started, redis.call('ZCARD', E.tenants)}
""",
)

# Requeue a dead-lettered job as it was queued: a clean slate of attempts, and its hash and
# upload living a whole TTL again.
# It goes back on its own tenant's stream.
# KEYS: job, dead-letter stream, input, then the recording keys
# ARGV: dead entry id, ttl, oldest live id, job id, now, then the recording arguments
REQUEUE: Final = Script(
    "requeue",
    durable=True,
    template=_QUEUE_FUNCTION
    + """
local E = recording(4, 6)
redis.call('XDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], '$F_ERROR_CODE') ~= 'too_many_attempts' then return 0 end
redis.call('HDEL', KEYS[1], '$F_ERROR_CODE', '$F_ERROR_MESSAGE', '$F_STARTED_AT',
           '$F_FINISHED_AT', '$F_DELIVERY', '$F_ENDED_BY')
redis.call('HSET', KEYS[1], '$F_STATUS', '$S_QUEUED', '$F_ATTEMPTS', 0, '$F_QUEUED_AT', ARGV[5])
local tenant = redis.call('HGET', KEYS[1], '$F_TENANT') or E.default_tenant
put_on_stream(E, KEYS[1], KEYS[3], tenant, tonumber(ARGV[2]), ARGV[3], ARGV[4])
emit(E, KEYS[1], ARGV[4], 'requeued', '', 0, '')
return 1
""",
)

# Cancel only a job that no worker has started; answer the status it had.
# KEYS: job, input, then the recording keys
# ARGV: now, finished channel, job id, metrics to add, then the recording arguments
CANCEL: Final = Script(
    "cancel",
    durable=True,
    template=_RECORD_FUNCTIONS
    + """
local E = recording(3, 5)
local status = redis.call('HGET', KEYS[1], '$F_STATUS')
if status == '$S_QUEUED' then
  redis.call('HSET', KEYS[1], '$F_STATUS', '$S_CANCELLED', '$F_FINISHED_AT', ARGV[1])
  redis.call('DEL', KEYS[2])
  -- A worker that read the entry already finds the job cancelled and drops it.
  local entry = redis.call('HGET', KEYS[1], '$F_ENTRY')
  local tenant = redis.call('HGET', KEYS[1], '$F_TENANT')
  if entry then redis.call('XDEL', of_tenant(E, E.stream, tenant), entry) end
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  add_metrics(E, ARGV[4])
  emit(E, KEYS[1], ARGV[3], 'cancelled', '', 0, '')
end
return status
""",
)

# Mark a job running only while it is queued or running (a redelivery, after its worker
# died: `reclaimed`): a cancelled or ended job stays as it is, and an expired one is not
# recreated without a TTL. A retry of this very delivery (its token already stored) changes
# nothing: one attempt. The highest `seq` started in its tenant's order tells that tenant's
# queued jobs how many are ahead.
# Its answer: the job's hash after the start, or nil when it expired.
_START_FUNCTION: Final = (
    _RECORD_FUNCTIONS
    + """
local function start_job(E, job_key, job_id, token, worker)
  local status = redis.call('HGET', job_key, '$F_STATUS')
  if not status then return nil end
  local ours = redis.call('HGET', job_key, '$F_DELIVERY') == token
  if (status == '$S_QUEUED' or status == '$S_RUNNING') and not ours then
    redis.call('HSET', job_key, '$F_STATUS', '$S_RUNNING', '$F_STARTED_AT', E.now,
               '$F_DELIVERY', token)
    redis.call('HINCRBY', job_key, '$F_ATTEMPTS', 1)
    local seq = tonumber(redis.call('HGET', job_key, '$F_SEQ') or 0)
    local tenant = redis.call('HGET', job_key, '$F_TENANT')
    local started_seq = of_tenant(E, E.started_seq, tenant)
    if seq > tonumber(redis.call('GET', started_seq) or 0) then
      redis.call('SET', started_seq, seq)
    end
    local queued_at = tonumber(redis.call('HGET', job_key, '$F_QUEUED_AT') or E.now)
    local waited_ms = string.format('%.3f', (tonumber(E.now) - queued_at) * 1000)
    local event = status == '$S_RUNNING' and 'reclaimed' or 'started'
    emit(E, job_key, job_id, event, worker, waited_ms, '')
  end
  return redis.call('HGETALL', job_key)
end
"""
)

# KEYS: job, then the recording keys
# ARGV: delivery token, consumer, job id, then the recording arguments
START: Final = Script(
    "start",
    _START_FUNCTION
    + """
local E = recording(2, 4)
return start_job(E, KEYS[1], ARGV[3], ARGV[1], ARGV[2])
""",
)

# What a busy worker does between two jobs, in one round trip instead of two: pick the
# tenant whose turn it is, read the next new entry of its stream and start its job.
# Tenants take turns (fair share): the one served longest ago goes first, and goes to the
# end of the round once visited, so one tenant's backlog delays another's jobs by at most a
# job per tenant with work. A tenant whose stream is empty leaves the round (and its stream,
# its group with it, and its numbering are deleted: the next job recreates them), except the
# default tenant, whose stream stays for workers to wait on. A front of an earlier version
# puts jobs on the default stream without making a turn for them: the default tenant joins
# the round whenever its stream holds entries, or those jobs would wait until no tenant has
# work (after an upgrade to keys, maybe until they expire).
# A script cannot block: when nothing is new, the answer holds the last entries of the
# streams an idle worker waits on (the wake stream, and the default one for those older
# fronts), so that its wait starts exactly where this read ended and misses nothing.
# Keys are built here from the tenants' names and the entries, which a Redis Cluster would
# refuse; renderq runs on one primary.
# KEYS: the recording keys
# ARGV: consumer, run id, prefix of job keys, then the recording arguments
# Its answer: {tenant, entry id, entry fields, the job's hash after the start (or false)},
# or {false, last entry of the wake stream, last entry of the default stream}.
TAKE: Final = Script(
    "take",
    _START_FUNCTION
    + """
local E = recording(1, 4)
local me = ARGV[1]
local function read_new(stream)
  local reply = redis.pcall('XREADGROUP', 'GROUP', E.group, me, 'COUNT', 1,
                            'STREAMS', stream, '>')
  if type(reply) == 'table' and reply.err then
    -- A group deleted by hand: made again, as the worker makes the default stream's.
    if not string.find(reply.err, 'NOGROUP') then error(reply.err) end
    redis.call('XGROUP', 'CREATE', stream, E.group, '0', 'MKSTREAM')
    reply = redis.call('XREADGROUP', 'GROUP', E.group, me, 'COUNT', 1, 'STREAMS', stream, '>')
  end
  return reply
end
local function take_from(stream, tenant)
  local reply = read_new(stream)
  if not reply then return nil end
  local entry_id, fields = reply[1][2][1][1], reply[1][2][1][2]
  local job_id = ''
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then job_id = fields[i + 1] end
  end
  local token = me .. ' ' .. ARGV[2] .. ' ' .. entry_id
  local job = start_job(E, ARGV[3] .. job_id, job_id, token, me)
  return {tenant, entry_id, fields, job or false}
end
local function last_entry(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  return last and last[1] or '0-0'
end
if redis.call('XLEN', E.stream) > 0 then
  redis.call('ZADD', E.tenants, 'NX', 0, E.default_tenant)
end
for _ = 1, redis.call('ZCARD', E.tenants) do
  local tenant = redis.call('ZRANGE', E.tenants, 0, 0)[1]
  local stream = of_tenant(E, E.stream, tenant)
  if redis.call('XLEN', stream) == 0 then
    redis.call('ZREM', E.tenants, tenant)
    if stream ~= E.stream then
      -- No job of the tenant waits or runs: its numbering starts again with its next job,
      -- so that a tenant's keys do not outlive its work (tenants come and go).
      redis.call('DEL', stream, of_tenant(E, E.queued_seq, tenant),
                 of_tenant(E, E.started_seq, tenant))
    end
  else
    redis.call('ZADD', E.tenants, turn_now(), tenant)
    local taken = take_from(stream, tenant)
    if taken then return taken end
  end
end
return {false, last_entry(E.wake), last_entry(E.stream)}
""",
)

# End a job exactly once: only the first worker to finish a started job stores its outcome
# (a slow worker whose job was reclaimed finds it ended and only acknowledges). The entry is
# acknowledged and deleted in any case.
# A retry of a call whose reply was lost finds its own token in `ended_by` and says so.
# Its counts (`Increments`), its event and the second it ended in (the recent rate) are
# recorded only by the call that ends it. While a tap is registered, the upload is kept a
# little longer for it instead of deleted.
# KEYS: job, result, input, the delivery's stream, dead-letter stream, this second's ended
#       count, then the recording keys
# ARGV: entry id, group, ttl, now, channel, job id, image or '', dead-letter min id or '',
#       delivery token, metrics to add, consumer, render ms, error code, tap upload ttl,
#       series ttl, then the recording arguments, then the status fields
END: Final = Script(
    "end",
    durable=True,
    template=_RECORD_FUNCTIONS
    + """
local E = recording(7, 16)
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
           unpack(ARGV, 16 + RECORDING_ARGS))
redis.call('EXPIRE', KEYS[1], ttl)
local code = ARGV[13]
if ARGV[8] ~= '' then
  -- Dead-lettered: keep the upload, so an operator can requeue the job.
  redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[8], '*', 'id', ARGV[6])
  redis.call('EXPIRE', KEYS[3], ttl)
elseif redis.call('SCARD', E.taps) > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[14])
else
  redis.call('DEL', KEYS[3])
end
add_metrics(E, ARGV[10])
redis.call('INCR', KEYS[6])
redis.call('EXPIRE', KEYS[6], ARGV[15])
emit(E, KEYS[1], ARGV[6], code == '' and 'ended' or 'failed', ARGV[11], ARGV[12], code)
if ARGV[8] ~= '' then emit(E, KEYS[1], ARGV[6], 'dead_lettered', ARGV[11], 0, code) end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
""",
)

# Hand this worker one pending entry that nobody is working on: its own (left by an earlier
# run under the same name, or whose end a failover lost), or a dead worker's (its lease is
# gone). A dead worker with nothing pending is removed from the group, so the group does not
# grow with every worker that ever ran. The caller names the candidates and the streams that
# may hold entries (every tenant's with entries); the leases are read here again, so a
# worker that came back in between keeps its job. A stream without the group is skipped.
# KEYS: the streams, then each candidate's lease
# ARGV: group, this worker, how many streams, then the candidates
# Its answer: {which stream (from 1), {entry id, entry fields}}, or nil.
CLAIM: Final = Script(
    "claim",
    template="""
local group, me, streams = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function claim_from(stream, name)
  while true do
    local ok, pending = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1, name)
    if not ok or #pending == 0 then return nil end
    local claimed = redis.call('XCLAIM', stream, group, me, 0, pending[1][1])
    if #claimed > 0 and claimed[1][2] then return claimed[1] end
    -- The entry itself was deleted: nothing to run.
    redis.call('XACK', stream, group, pending[1][1])
  end
end
for i = 1, #KEYS - streams do
  local name = ARGV[i + 3]
  if name == me or redis.call('EXISTS', KEYS[streams + i]) == 0 then
    for s = 1, streams do
      local claimed = claim_from(KEYS[s], name)
      if claimed then return {s, claimed} end
      if name ~= me then pcall(redis.call, 'XGROUP', 'DELCONSUMER', KEYS[s], group, name) end
    end
  end
end
return nil
""",
)

# A worker that stops cleanly drops its lease, and leaves the group of every stream where it
# holds no entry.
# KEYS: lease, index of workers, then the streams   ARGV: group, this worker
RETIRE: Final = Script(
    "retire",
    template="""
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
for s = 3, #KEYS do
  local ok, pending = pcall(redis.call, 'XPENDING', KEYS[s], ARGV[1], '-', '+', 1, ARGV[2])
  if ok and #pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[s], ARGV[1], ARGV[2])
  end
end
return 1
""",
)

# What the queue holds in all, for the metrics and the dashboard: the entries (waiting or
# running) and those running (delivered, not yet acknowledged), in all and by tenant, and
# the entries each consumer holds, over every tenant's stream, in one round trip.
# KEYS: tenants taking turns, the default stream   ARGV: group, the default tenant
# Its answer: {entries, running, {tenant, entries, running, ...}, {consumer, held, ...}}.
DEPTH: Final = Script(
    "depth",
    template=_RECORD_FUNCTIONS
    + """
local E = {tenants = KEYS[1], stream = KEYS[2], group = ARGV[1], default_tenant = ARGV[2]}
local by_tenant, held_by, consumers, entries, running = {}, {}, {}, 0, 0
for _, tenant in ipairs(all_tenants(E)) do
  local stream = of_tenant(E, E.stream, tenant)
  local length = redis.call('XLEN', stream)
  local held = 0
  -- A stream or group not made yet (no job, no worker) has nothing running.
  local found = redis.pcall('XINFO', 'CONSUMERS', stream, E.group)
  if not found.err then
    for _, consumer in ipairs(found) do
      local name, pending = consumer[2], consumer[4]
      if not held_by[name] then
        held_by[name] = 0
        table.insert(consumers, name)
      end
      held_by[name] = held_by[name] + pending
      held = held + pending
    end
  end
  entries, running = entries + length, running + held
  for _, value in ipairs({tenant, length, held}) do table.insert(by_tenant, value) end
end
local flat = {}
for _, name in ipairs(consumers) do
  table.insert(flat, name)
  table.insert(flat, held_by[name])
end
return {entries, running, by_tenant, flat}
""",
)


SCRIPTS: Final = (ENQUEUE, REQUEUE, CANCEL, START, TAKE, END, CLAIM, RETIRE, DEPTH)


@dataclass(frozen=True)
class QueueLimits:
    """What queueing is bounded by: how long a job lives, how many may wait, how many events
    and tap copies are kept, how long a tap may still read an ended job's upload."""

    ttl: int
    max_queued: int
    events_max: int = 10000
    tap_max: int = 1000
    tap_input_ttl: int = 300

    @classmethod
    def of(cls, settings: Settings) -> QueueLimits:
        return cls(
            settings.result_ttl,
            settings.max_queued,
            settings.events_max,
            settings.tap_max,
            settings.tap_input_ttl,
        )


def _recording(
    keys: Keys, limits: QueueLimits, now: float
) -> tuple[tuple[str, ...], tuple[ScriptArg, ...]]:
    """The keys and arguments every script's `recording(...)` reads, in its order."""
    tap_head, _, tap_tail = keys.tap_stream("\n").partition("\n")
    return (
        (
            *(keys.metrics, keys.events, keys.job_tag_key, keys.queued_seq, keys.taps),
            *(keys.tenants, keys.wake, keys.stream, keys.started_seq),
        ),
        (limits.events_max, now, tap_head, tap_tail, limits.tap_max, DEFAULT_TENANT, keys.group),
    )


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
    now: float,
    counted: Increments | None = None,
    tenant_max_queued: int = 0,
) -> ScriptCall:
    """Queue the job whose hash is `fields` on its tenant's stream, adding `counted` to the
    metrics. Its answer: `[b"queued", id, seq, started seq, tenants taking turns]` (the
    numbers in its tenant's order), `[b"full", ""]`, `[b"tenant_full", ""]` (past
    `tenant_max_queued` of the tenant's jobs waiting; 0 is no cap), or
    `[b"existing", stored]` (see `Idempotency.stored`) for a key already used."""
    job_id = fields[JobField.ID]
    flat = tuple(item for pair in fields.items() for item in pair)
    record_keys, record_args = _recording(keys, limits, now)
    return ScriptCall(
        ENQUEUE,
        (
            keys.job(job_id),
            keys.input(job_id),
            *record_keys,
            *([keys.idempotency(idempotency.key)] if idempotency else []),
        ),
        (
            limits.ttl,
            limits.max_queued,
            oldest_live_entry_id(limits.ttl),
            job_id,
            idempotency.stored(job_id) if idempotency else "",
            upload or b"",
            counted.encoded() if counted else "",
            fields.get(JobField.TENANT, DEFAULT_TENANT),
            tenant_max_queued,
            *record_args,
            *flat,
        ),
    )


def requeue_call(
    keys: Keys, entry_id: str, job_id: str, limits: QueueLimits, now: float
) -> ScriptCall:
    record_keys, record_args = _recording(keys, limits, now)
    ttl = limits.ttl
    return ScriptCall(
        REQUEUE,
        (keys.job(job_id), keys.dead_letters, keys.input(job_id), *record_keys),
        (entry_id, ttl, oldest_live_entry_id(ttl), job_id, now, *record_args),
    )


def cancel_call(
    keys: Keys, job_id: str, limits: QueueLimits, now: float, counted: Increments | None = None
) -> ScriptCall:
    record_keys, record_args = _recording(keys, limits, now)
    return ScriptCall(
        CANCEL,
        (keys.job(job_id), keys.input(job_id), *record_keys),
        (
            now,
            keys.finished_channel,
            job_id,
            counted.encoded() if counted else "",
            *record_args,
        ),
    )


def start_call(keys: Keys, delivery: Delivery, limits: QueueLimits, now: float) -> ScriptCall:
    """Its answer: the job's hash as a flat list after the start, or None if it expired."""
    record_keys, record_args = _recording(keys, limits, now)
    return ScriptCall(
        START,
        (keys.job(delivery.job_id), *record_keys),
        (delivery.token, delivery.consumer, delivery.job_id, *record_args),
    )


def take_call(keys: Keys, consumer: str, run: str, limits: QueueLimits, now: float) -> ScriptCall:
    """Take the next new entry for `consumer`, from the tenant whose turn it is, and start
    its job (see `TAKE`); the token it starts the job under is the one `Delivery.token`
    gives."""
    record_keys, record_args = _recording(keys, limits, now)
    return ScriptCall(TAKE, record_keys, (consumer, run, keys.job(""), *record_args))


def depth_call(keys: Keys) -> ScriptCall:
    """Read what the queue holds (see `DEPTH`)."""
    return ScriptCall(DEPTH, (keys.tenants, keys.stream), (keys.group, DEFAULT_TENANT))


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
    render_ms: float = 0.0

    @classmethod
    def done(cls, image: bytes, render_ms: float = 0.0) -> Ending:
        return cls({JobField.STATUS: JobStatus.DONE}, image, render_ms=render_ms)

    @classmethod
    def failed(
        cls, failure: JobFailure, dead_letter: bool = False, render_ms: float = 0.0
    ) -> Ending:
        fields = {
            JobField.STATUS: JobStatus.FAILED,
            JobField.ERROR_CODE: failure.code,
            JobField.ERROR_MESSAGE: failure.message,
        }
        return cls(fields, dead_letter=dead_letter, render_ms=render_ms)


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to one consumer: the entry id to acknowledge and the job id."""

    entry_id: str
    job_id: str
    consumer: str
    # The worker process's run id: a worker restarted under the same consumer name that takes
    # its own entry back makes a new delivery, which counts as a new attempt.
    run: str = ""
    # Whose stream the entry is on (see `Keys.tenant_stream`).
    tenant: str = DEFAULT_TENANT

    @property
    def token(self) -> str:
        """Names this delivery in the job hash, so a script retried after a lost reply (Redis
        restarted between running it and answering) recognises its own earlier write."""
        return f"{self.consumer} {self.run} {self.entry_id}"


def end_call(
    keys: Keys,
    delivery: Delivery,
    ending: Ending,
    limits: QueueLimits,
    now: float,
    counted: Increments | None = None,
) -> ScriptCall:
    """End the job of `delivery`, adding `counted` to the metrics if this call ends it. Its
    answer: 1 when this call ended it (or ended it before and is being retried), 0 when
    another delivery had."""
    job_id = delivery.job_id
    ttl = limits.ttl
    flat = tuple(item for pair in ending.fields.items() for item in pair)
    record_keys, record_args = _recording(keys, limits, now)
    return ScriptCall(
        END,
        (
            keys.job(job_id),
            keys.result(job_id),
            keys.input(job_id),
            keys.tenant_stream(delivery.tenant),
            keys.dead_letters,
            keys.ended_in_second(int(now)),
            *record_keys,
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
            counted.encoded() if counted else "",
            delivery.consumer,
            f"{ending.render_ms:.3f}",
            ending.fields.get(JobField.ERROR_CODE, ""),
            limits.tap_input_ttl,
            SERIES_SECONDS,
            *record_args,
            *flat,
        ),
    )


def claim_call(
    keys: Keys, consumer: str, candidates: Sequence[str], tenants: Sequence[str]
) -> ScriptCall:
    """Claim one entry from `candidates` (this worker first, then workers seen dead) on the
    streams of `tenants`. Its answer: `[n, [entry id, [field, value, ...]]]`, the entry
    found on the stream of `tenants[n - 1]`, or None when there was nothing to take."""
    streams = tuple(keys.tenant_stream(tenant) for tenant in tenants)
    return ScriptCall(
        CLAIM,
        (*streams, *(keys.worker(name) for name in candidates)),
        (keys.group, consumer, len(streams), *candidates),
    )


def retire_call(keys: Keys, consumer: str, tenants: Sequence[str]) -> ScriptCall:
    streams = (keys.tenant_stream(tenant) for tenant in tenants)
    return ScriptCall(
        RETIRE, (keys.worker(consumer), keys.workers, *streams), (keys.group, consumer)
    )
