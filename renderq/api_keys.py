"""API keys: who may use renderq (with `RENDERQ_AUTH=required`), and each one's limits.

A key reads `rq_<tenant>_<64 hex digits>` and is shown once, when it is created. Redis keeps
only a random salt and the SHA-256 of salt and secret, in one hash (`Keys.api_keys`) that
every front reads, so revoking a key there revokes it everywhere. The secret holds 256
random bits: a fast hash is enough, nothing can be guessed from it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from redis import Redis

from renderq.keys import Keys
from renderq.tenants import DEFAULT_TENANT, TENANT_NAME_PATTERN, is_tenant_name

KEY_PREFIX: Final = "rq_"
_SECRET_HEX: Final = 64
_API_KEY: Final = re.compile(f"{KEY_PREFIX}({TENANT_NAME_PATTERN})_([0-9a-f]{{{_SECRET_HEX}}})")


@dataclass(frozen=True)
class KeyLimits:
    """What a key may do: submissions per second (`rate`, 0: unlimited) with bursts of up to
    `burst`; jobs waiting at once (`max_queued`, 0: only the global cap); operator routes."""

    rate: float = 0.0
    burst: int = 0
    max_queued: int = 0
    admin: bool = False

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 0 or self.max_queued < 0 or not math.isfinite(self.rate):
            raise ValueError("rate, burst and max-queued must be finite and not negative")
        if self.rate and not self.burst:  # a rate alone allows one second's worth at once
            object.__setattr__(self, "burst", max(1, math.ceil(self.rate)))


@dataclass(frozen=True)
class ApiKey:
    """One tenant's key as stored: never the secret itself."""

    name: str
    salt: str
    digest: str
    limits: KeyLimits
    created_at: float

    def matches(self, secret: str) -> bool:
        """Whether `secret` is this key's, compared in constant time."""
        return hmac.compare_digest(_digest(self.salt, secret), self.digest)

    def to_json(self) -> str:
        return json.dumps(
            {
                "salt": self.salt,
                "digest": self.digest,
                "created_at": self.created_at,
                **asdict(self.limits),
            }
        )

    @classmethod
    def from_json(cls, name: str, text: str | bytes) -> ApiKey:
        data: dict[str, Any] = json.loads(text)
        limits = KeyLimits(
            float(data["rate"]), int(data["burst"]), int(data["max_queued"]), bool(data["admin"])
        )
        return cls(name, data["salt"], data["digest"], limits, float(data["created_at"]))

    def summary(self) -> dict[str, Any]:
        """What `list` shows: everything but the salt and the hash."""
        return {"name": self.name, "created_at": self.created_at, **asdict(self.limits)}


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def new_key(name: str, limits: KeyLimits) -> tuple[str, ApiKey]:
    """A new key for tenant `name`: the text to hand the client once, and what is stored."""
    if not is_tenant_name(name):
        raise ValueError(f"a key's name must match {TENANT_NAME_PATTERN}; got {name!r}")
    if name == DEFAULT_TENANT:
        raise ValueError(f"{name!r} is the implicit tenant of RENDERQ_AUTH=off")
    secret = secrets.token_hex(_SECRET_HEX // 2)
    salt = secrets.token_hex(16)
    stored = ApiKey(name, salt, _digest(salt, secret), limits, time.time())
    return f"{KEY_PREFIX}{name}_{secret}", stored


def parse_key(text: str) -> tuple[str, str] | None:
    """(tenant, secret) of a key's text, or None when it is not shaped like a key."""
    found = _API_KEY.fullmatch(text)
    return None if found is None else (found[1], found[2])


# The store, as the key command uses it (the front only reads, see `service.tenancy`).


def create_key(redis: Redis, keys: Keys, name: str, limits: KeyLimits) -> str | None:
    """Store a new key for `name` and return its text; None when `name` already has one."""
    text, stored = new_key(name, limits)
    created = redis.hsetnx(keys.api_keys, name, stored.to_json())
    return text if created else None


def list_keys(redis: Redis, keys: Keys) -> list[ApiKey]:
    raw: Any = redis.hgetall(keys.api_keys)
    found = [ApiKey.from_json(name.decode(), text) for name, text in raw.items()]
    return sorted(found, key=lambda key: key.name)


def revoke_key(redis: Redis, keys: Keys, name: str) -> bool:
    """Delete `name`'s key (and its bucket); whether there was one."""
    removed = int(redis.hdel(keys.api_keys, name))
    redis.delete(keys.rate_bucket(name))
    return removed > 0


def update_key(redis: Redis, keys: Keys, name: str, changes: dict[str, Any]) -> ApiKey | None:
    """Change `name`'s limits, keeping its secret; None when there is no such key. The write
    is a compare-and-set, so two operators updating at once do not lose one's change."""
    while True:
        text: Any = redis.hget(keys.api_keys, name)
        if text is None:
            return None
        stored = ApiKey.from_json(name, text)
        updated = replace(stored, limits=replace(stored.limits, **changes))
        if redis.eval(_SWAP, 1, keys.api_keys, name, text, updated.to_json()):
            return updated


# Replace a hash field's value only if it is still `expected`.
# KEYS: the hash   ARGV: field, expected, new value
_SWAP: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
