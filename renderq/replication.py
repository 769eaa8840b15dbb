"""Durable writes: a write that a failover must not lose waits until a replica has it.

Redis replicates asynchronously, so a primary that dies right after a write may take it with
it when Sentinel promotes a replica. After each durable script (`Script.durable`: queueing a
job, ending it, cancelling, requeueing) the caller sends `WAIT 1 <timeout>` on the same
connection, in the same round trip, whenever the primary had a replica when last asked, and
asks again (`INFO replication`, in the same round trip) at most once a second, or at once
when no replica confirmed:

- the replica confirmed: the write survives the loss of the primary;
- no replica confirmed although the primary has one: `NotReplicated` (the front answers 503,
  the worker tries again);
- the primary has no replica (a single Redis, or a failover left one node): nothing to wait
  for, and the next write sends no WAIT.

`WAITAOF` (Redis 7.2) would also cover the primary's own disk; Debian's Redis is 7.0, so
renderq uses `WAIT`, and the primary's AOF (fsync every second) covers a restart.
A replica that connected since the primary was last asked is not waited for: it is copying
the whole data set, and that copy carries the write.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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


# How often a durable write also asks the primary for its replicas: `INFO` costs the primary
# and the client more than the write itself.
INFO_INTERVAL: Final = 1.0


@dataclass
class ReplicaAcks:
    """What durable writes learned: how many replicas the primary had when last asked. Until
    a first `observe`, assume one: a write that cannot tell waits rather than risks the job."""

    timeout_ms: int
    replicas: int = 1
    observed_at: float = -math.inf

    @property
    def wait_for(self) -> int:
        """Replicas the next durable write waits for (0: send no WAIT)."""
        return 1 if self.replicas > 0 else 0

    def info_due(self) -> bool:
        """Whether the next durable write asks for `INFO replication` too."""
        return time.monotonic() - self.observed_at >= INFO_INTERVAL

    def observe(self, info: Mapping[str, Any]) -> None:
        """Learn the primary's replicas from its `INFO replication`."""
        self.replicas = int(info.get("connected_slaves", 0))
        self.observed_at = time.monotonic()

    def unconfirmed(self, acked: int | None) -> bool:
        """A WAIT was sent and no replica confirmed: whether that fails the write depends on
        whether the primary still has a replica, which `settle` must then be told."""
        return acked is not None and acked < 1

    def settle(self, result: Any, acked: int | None, info: Mapping[str, Any] | None) -> Any:
        """Record the replicas the primary has now (when `info` was read), and pass the
        script's `result` on; raise `NotReplicated` when the primary has replicas and none
        confirmed the write (`acked` is None when no WAIT was sent).

        A replica still copying the whole data set counts: until it is in sync, a failover to
        it would lose the write, so the write is not confirmed.
        """
        if info is not None:
            self.observe(info)
        if self.unconfirmed(acked) and self.replicas > 0:
            raise NotReplicated(self.replicas, self.timeout_ms, result)
        return result
