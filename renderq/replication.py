"""Durable writes: a write that a failover must not lose waits until a replica has it.

Redis replicates asynchronously, so a primary that dies right after a write may take it with
it when Sentinel promotes a replica. After each durable script (`Script.durable`: queueing a
job, ending it, cancelling, requeueing) the caller sends `WAIT 1 <timeout>` on the same
connection, in the same round trip, whenever the primary had a replica when last asked, and
asks again (`INFO replication`, in the same round trip) at most once a second, or at once
when no replica confirmed:

- the replica confirmed: the write survives the loss of the primary;
- no replica confirmed although the primary has one, or the write sent no WAIT and the
  `INFO` read with it shows a replica: `NotReplicated` (the front answers 503, the worker
  tries again). A retry writes again what it finds (see the scripts), so its WAIT covers
  the first write too;
- the primary has no replica (a single Redis, or a failover left one node): nothing to wait
  for, and the next write sends no WAIT.

`WAITAOF` (Redis 7.2) would also cover the primary's own disk; Debian's Redis is 7.0, so
renderq uses `WAIT`, and the primary's AOF (fsync every second) covers a restart.
The window this leaves: while the primary had no replica when last asked, the writes of the
following second send no WAIT, so a replica that connects in that second and a failover to it
before it has them could lose them. Asking on every write would close it, for an `INFO` per
job on every single-Redis deployment.
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


def raise_first_error(replies: list[Any]) -> None:
    """Raise the first error among a pipeline's replies (read with `raise_on_error=False`)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


# How often a durable write also asks the primary for its replicas: `INFO` costs the primary
# and the client more than the write itself.
INFO_INTERVAL: Final = 1.0


@dataclass
class ReplicaAcks:
    """What durable writes learned: how many replicas the primary had when last asked. Until
    a first `observe`, assume one: a write that cannot tell waits rather than risks the job."""

    timeout_ms: int
    replicas: int = 1
    asked_at: float = -math.inf

    @property
    def wait_for(self) -> int:
        """Replicas the next durable write waits for (0: send no WAIT)."""
        return 1 if self.replicas > 0 else 0

    def ask_info(self) -> bool:
        """Whether the next durable write asks for `INFO replication` too: at most once an
        interval, counted from the asking, so concurrent writes do not all ask."""
        now = time.monotonic()
        if now - self.asked_at < INFO_INTERVAL:
            return False
        self.asked_at = now
        return True

    def observe(self, info: Mapping[str, Any]) -> None:
        """Learn the primary's replicas from its `INFO replication`."""
        self.replicas = int(info.get("connected_slaves", 0))

    def unconfirmed(self, acked: int | None) -> bool:
        """A WAIT was sent and no replica confirmed: whether that fails the write depends on
        whether the primary still has a replica, which `settle` must then be told."""
        return acked is not None and acked < 1

    def settle(self, result: Any, acked: int | None, info: Mapping[str, Any] | None) -> Any:
        """Record the replicas the primary has now (when `info` was read), and pass the
        script's `result` on; raise `NotReplicated` when the primary has replicas and none
        confirmed the write: no replica acknowledged the WAIT, or no WAIT was sent (`acked`
        is None) because the primary had no replica when last asked and has one now.

        A replica still copying the whole data set counts: until it is in sync, a failover to
        it would lose the write, so the write is not confirmed. The caller's retry (the same
        Idempotency-Key, the same end) writes again, and its WAIT then covers both writes.
        """
        if info is not None:
            self.observe(info)
        if (acked is None or acked < 1) and self.replicas > 0:
            raise NotReplicated(self.replicas, self.timeout_ms, result)
        return result
