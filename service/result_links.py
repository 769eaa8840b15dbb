"""Signed result links: `/results/<id>?expires=<unix time>&sig=<HMAC-SHA256>`, which open a
done job's image without an API key, so a page can put one straight into `<img src>`.

The signature covers the job id and the expiry, under the deployment's signing secret
(`RENDERQ_SIGNING_KEY`, or the file `RENDERQ_SIGNING_KEY_FILE`): changing either breaks it.
Several secrets may be given, comma-separated: the first signs, all are accepted, so a new
secret can be rolled out while links signed with the old one still work.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from renderq.errors import ErrorCode, Forbidden
from renderq.settings import Settings, SettingsError

_SIG_HEX: Final = 64
# A Unix time, written as the link was (no leading zero): `whole_number` stops at 9 digits,
# and today's times have 10.
_UNIX_TIME: Final = re.compile("0|[1-9][0-9]{0,11}")


@dataclass(frozen=True)
class LinkSigner:
    """The signing secrets, the first of which signs; none: links are off."""

    secrets: tuple[bytes, ...]

    @classmethod
    def of(cls, settings: Settings) -> LinkSigner:
        text = settings.signing_key or _read_secret_file(settings.signing_key_file)
        found = (part.strip() for part in text.replace("\n", ",").split(","))
        return cls(tuple(secret.encode() for secret in found if secret))

    @property
    def enabled(self) -> bool:
        return bool(self.secrets)

    def url(self, job_id: str, expires: int) -> str:
        return f"/results/{job_id}?expires={expires}&sig={_sign(self.secrets[0], job_id, expires)}"

    def verify(self, job_id: str, expires_text: str | None, sig: str | None) -> int:
        """The link's expiry if `sig` signs `job_id` and `expires_text` and it has not passed;
        403 otherwise (`invalid_signature` or `link_expired`)."""
        expires = _unix_time(expires_text or "")
        # Exactly as signed (lowercase hex), and as bytes: compare_digest refuses a str with
        # characters beyond ASCII.
        given = (sig or "").encode()
        valid = (
            expires is not None
            and len(given) == _SIG_HEX
            and any(
                hmac.compare_digest(_sign(secret, job_id, expires).encode(), given)
                for secret in self.secrets
            )
        )
        if not valid or expires is None:
            raise Forbidden(ErrorCode.INVALID_SIGNATURE, "this result link is not valid")
        if expires < time.time():
            raise Forbidden(ErrorCode.LINK_EXPIRED, "this result link has expired")
        return expires


def _unix_time(text: str) -> int | None:
    return int(text) if _UNIX_TIME.fullmatch(text) else None


def _sign(secret: bytes, job_id: str, expires: int) -> str:
    return hmac.new(secret, f"{job_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _read_secret_file(path: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(
            f"RENDERQ_SIGNING_KEY_FILE={path!r} cannot be read: {exc.strerror}"
        ) from exc
