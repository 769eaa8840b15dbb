"""Durable writes: a write that a failover must not lose waits until a replica has it.

Redis replicates asynchronously, so a primary that dies right after a write may take it with
it when Sentinel promotes a replica. After each durable script (`Script.durable`: queueing a
job, ending it, cancelling, requeueing) the caller sends `WAIT 1 <timeout>` on the same
connection, in the same round trip, whenever the primary had a replica at the previous
write, and then reads `INFO replication`:

- the replica confirmed: the write survives the loss of the primary;
- no replica confirmed although the primary has one: `NotReplicated` (the front answers 503,
  the worker tries again);
- the primary has no replica (a single Redis, or a failover left one node): nothing to wait
  for, and the next write sends no WAIT.

`WAITAOF` (Redis 7.2) would also cover the primary's own disk; Debian's Redis is 7.0, so
renderq uses `WAIT`, and the primary's AOF (fsync every second) covers a restart.
A replica that has connected since the previous write is not waited for by the next one:
it is copying the whole data set, and that copy carries the write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from renderq.errors import ErrorCode, QueueUnavailable


class NotReplicated(QueueUnavailable):
    """The write is on the primary, but no replica confirmed it in time; `result` is what the
    script answered on the primary."""

    def __init__(self, replicas: int, timeout_ms: int, result: Any = None) -> None:
        self.result = result
        super().__init__(
            ErrorCode.NOT_REPLICATED,
            f"the job store's primary has {replicas} replica(s) and none confirmed the write "
            f"within {timeout_ms} ms; try again shortly (with the same Idempotency-Key)",
        )


@dataclass
class ReplicaAcks:
    """What the last durable write learned: how many replicas the primary had. Until a first
    `observe`, assume one: a write that cannot tell waits rather than risks the job."""

    timeout_ms: int
    replicas: int = 1

    @property
    def wait_for(self) -> int:
        """Replicas the next durable write waits for (0: send no WAIT)."""
        return 1 if self.replicas > 0 else 0

    def observe(self, info: Mapping[str, Any]) -> None:
        """Learn the primary's replicas from its `INFO replication`."""
        self.replicas = int(info.get("connected_slaves", 0))

    def settle(self, result: Any, acked: int | None, info: Mapping[str, Any]) -> Any:
        """Record the replicas the primary has now, and pass the script's `result` on; raise
        `NotReplicated` when the primary has replicas and none confirmed the write (`acked` is
        None when no WAIT was sent).

        A replica still copying the whole data set counts: until it is in sync, a failover to
        it would lose the write, so the write is not confirmed.
        """
        self.observe(info)
        if acked is not None and acked < 1 and self.replicas > 0:
            raise NotReplicated(self.replicas, self.timeout_ms, result)
        return result
