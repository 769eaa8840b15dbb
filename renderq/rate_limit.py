"""A token bucket per tenant, in Redis: the submission rate an API key allows (`--rate`,
`--burst`), the same on every front because one script takes the token atomically.

The bucket holds up to `burst` tokens and gains `rate` a second; a submission takes one. The
script reads Redis's own clock (TIME), so fronts whose clocks differ still share one bucket.
The headers follow the IETF draft "RateLimit header fields for HTTP": the policy is the
bucket's size and the seconds it takes to fill (`q`, `w`), the state what is left and when
the bucket is full again (`r`, `t`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from renderq.errors import ErrorCode, TooManyRequests
from renderq.keys import Keys
from renderq.queue_protocol import Script, ScriptCall

# KEYS: the tenant's bucket   ARGV: rate (tokens a second), burst (most tokens)
# Its answer: {1 if a token was taken else 0, the tokens left as text}.
TAKE_TOKEN: Final = Script(
    "take_token",
    template="""
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- Gone once it would be full anyway: an idle tenant costs no memory. At most a week, so an
-- extreme limit (a huge burst, a tiny rate) still makes a TTL Redis accepts, not an error;
-- a bucket left idle that long starts full again.
local ttl = math.min(math.ceil(burst / rate * 1000) + 1000, 604800000)
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
return {taken, tostring(tokens)}
""",
)

POLICY_NAME: Final = "submit"


def take_token_call(keys: Keys, tenant: str, rate: float, burst: int) -> ScriptCall:
    return ScriptCall(TAKE_TOKEN, (keys.rate_bucket(tenant),), (repr(rate), burst))


@dataclass(frozen=True)
class Bucket:
    """A bucket as one submission left it."""

    taken: bool
    tokens: float
    rate: float
    burst: int

    @classmethod
    def of(cls, reply: Any, rate: float, burst: int) -> Bucket:
        taken, tokens = reply
        return cls(bool(taken), float(tokens), rate, burst)

    @property
    def retry_after(self) -> int:
        """Whole seconds until the next token (at least 1: 0 would invite a retry now)."""
        return max(1, math.ceil((1 - self.tokens) / self.rate))

    def refusal(self) -> TooManyRequests:
        return TooManyRequests(
            ErrorCode.RATE_LIMITED,
            f"more than {self.rate:g} jobs a second (bursts of {self.burst}) from this client;"
            " slow down",
        )

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy and RateLimit, as structured fields."""
        fill = max(1, math.ceil(self.burst / self.rate))
        full_in = math.ceil((self.burst - self.tokens) / self.rate)
        return {
            "RateLimit-Policy": f'"{POLICY_NAME}";q={self.burst};w={fill}',
            "RateLimit": f'"{POLICY_NAME}";r={math.floor(self.tokens)};t={full_in}',
        }
