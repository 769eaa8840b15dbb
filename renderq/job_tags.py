"""Job ids never reach the logs: a job is named there by a tag, a short keyed hash of its id.

Holding a job id is what lets a client read its result, so an id in a log line would hand
the result to whoever reads the logs. The tag is a keyed hash of the id under a secret kept
in Redis (created once by whichever process needs it first), so every front and worker tags a
job the same way and its lines can be joined, but a tag cannot be turned back into the id.

It is SHA-1 over the secret, a colon and the id, cut to 64 bits, because a Lua script in Redis
can compute it too (`redis.sha1hex`): the queue's scripts name jobs in the events they append
exactly as the logs do. Cut short, the digest gives nothing to extend, and a 128-bit random id
cannot be found from it.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

TAG_LENGTH: Final = 16  # hex digits: 64 bits, plenty to join lines without collisions
_KEY_BYTES: Final = 32


def new_tag_key() -> str:
    """A fresh secret, offered with SET NX: the first process to store one wins."""
    return secrets.token_hex(_KEY_BYTES)


def as_bytes(value: bytes | str) -> bytes:
    """A value read from Redis, as bytes whatever the client's decoding."""
    return value.encode() if isinstance(value, str) else value


def as_text(value: object) -> str:
    """A value read from Redis, as text whatever the client's decoding."""
    return value.decode() if isinstance(value, bytes) else str(value)


class JobTags:
    """Tags job ids under the deployment's secret; `ready` once the secret is loaded."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    @property
    def ready(self) -> bool:
        return self._key is not None

    def load(self, stored: bytes) -> None:
        self._key = stored

    def tag(self, job_id: str) -> str:
        """The job's tag; `-` until the secret is loaded (nothing is logged in clear)."""
        if self._key is None:
            return "-"
        return hashlib.sha1(self._key + b":" + job_id.encode()).hexdigest()[:TAG_LENGTH]
