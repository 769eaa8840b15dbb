"""How long a queued job has left to wait: jobs ahead of it divided by its tenant's share of
the recent rate.

Each tenant's jobs are numbered as they are put on its stream (`Keys.tenant_queued_seq`) and
workers take them in that order, recording the highest number they started
(`Keys.tenant_started_seq`); the jobs between that and a job's own number are the ones ahead
of it in its tenant's queue (cancelled ones among them are skipped in no time, so it errs
long). Tenants with work take turns, so a tenant's share of the rate is at least the rate
over the number of tenants taking turns (more when the others run out of work: it errs long
again). The rate is the jobs ended over the last `RENDERQ_RATE_WINDOW` seconds, counted per
second by the scripts that end them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TimeLeft:
    """`eta_seconds` is None when no job ended lately: there is no rate to go by."""

    position: int
    eta_seconds: float | None

    @classmethod
    def of(cls, seq: int, started_seq: int, jobs_per_second: float, tenants: int = 1) -> TimeLeft:
        """`seq` and `started_seq` in the job's tenant's order; `tenants` taking turns."""
        ahead = max(0, seq - started_seq - 1)
        if jobs_per_second <= 0:
            return cls(ahead, None)
        return cls(ahead, round((ahead + 1) * max(1, tenants) / jobs_per_second, 3))

    def retry_after(self, shortest: int, longest: int) -> int:
        """Seconds a polling client should wait: the ETA, within [shortest, longest]."""
        if self.eta_seconds is None:
            return shortest
        return max(shortest, min(longest, math.ceil(self.eta_seconds)))
