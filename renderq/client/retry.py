"""When to try a request again, and after how long.

A 503 (`redis_unavailable`, `queue_full`, `not_replicated`), a 429 (`rate_limited`,
`tenant_queue_full`) and a request that got no answer are tried again: the API's 503s and
429s are passing states, and a submit carries an Idempotency-Key, so a retry of a job that
was in fact queued finds it instead of queueing a second. The delay is the server's
`Retry-After` when it gives one, else a backoff that doubles, with jitter so many clients
refused at once do not come back at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

import httpx2 as httpx

from renderq.validation import whole_number

# Gateways answer 502 and 504 for a front that is restarting or slow: as passing as a 503.
# A 429 is the client's own key's limit (its rate, its waiting jobs): it passes by waiting
# the Retry-After given.
RETRIED_STATUSES: Final = frozenset({429, 502, 503, 504})
# No answer came, or half of one: the request may be sent again. (A malformed URL or an
# unsupported scheme would fail the same way again.)
RETRIED_ERRORS: Final = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Retry:
    """Keep trying for `within` seconds in all; without a Retry-After, wait `first` seconds,
    then twice as long each time, up to `longest`. `Retry(within=0)` never retries."""

    within: float = 30.0
    first: float = 0.25
    longest: float = 5.0

    def delay(self, attempt: int, reply: httpx.Response | httpx.TransportError) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None when `reply` is not retried."""
        if isinstance(reply, httpx.TransportError):
            return self._backoff(attempt) if isinstance(reply, RETRIED_ERRORS) else None
        if reply.status_code not in RETRIED_STATUSES:
            return None
        asked = retry_after(reply)
        return self._backoff(attempt) if asked is None else asked

    def _backoff(self, attempt: int) -> float:
        return min(self.longest, self.first * 2.0**attempt) * random.uniform(0.5, 1.0)


def retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds; None without one (renderq sends seconds, never
    the header's other form, a date)."""
    seconds = whole_number(response.headers.get("retry-after", "").strip())
    return None if seconds is None else float(seconds)
