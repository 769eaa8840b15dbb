"""How the front and the workers connect to Redis: timeouts, retries with backoff, password.

A dropped connection or a Redis restart is retried a few times with exponential backoff
before the error reaches the caller (the front then answers 503; the worker backs off too).
The password is read from `RENDERQ_REDIS_PASSWORD_FILE` when the URL carries none, so it never
sits in an environment variable or a command line, and it is never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from renderq.settings import Settings, SettingsError


def connection_options(settings: Settings, retry_type: type) -> dict[str, Any]:
    """Keyword arguments for `Redis.from_url`; `retry_type` is redis-py's sync or async Retry.

    Read the password file before dropping privileges: the file is readable by renderq's
    users only.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": 2,
        "health_check_interval": 15,
        "retry": retry_type(ExponentialBackoff(cap=1.0, base=0.05), settings.redis_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    password = redis_password(settings)
    if password is not None:
        options["password"] = password
    return options


def redis_password(settings: Settings) -> str | None:
    """The password from `redis_password_file`, or None when no file is set."""
    if not settings.redis_password_file:
        return None
    try:
        return Path(settings.redis_password_file).read_text().strip()
    except OSError as exc:
        raise SettingsError(
            f"RENDERQ_REDIS_PASSWORD_FILE={settings.redis_password_file!r} cannot be read: "
            f"{exc.strerror}"
        ) from exc


def redacted_url(url: str) -> str:
    """`url` with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
