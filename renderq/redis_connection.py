"""How every renderq process reaches Redis: one URL or a Sentinel set, TLS, user and password,
timeouts and retries.

Every call has a short timeout per try and few retries, so a stalled Redis (frozen, or behind
a network that drops packets) is an error within seconds, not a hang; the front turns it into
a 503 and the worker backs off. With `REDIS_SENTINELS`, the primary's address comes from the
Sentinels and is asked again after every failover. Passwords come from files
(`RENDERQ_REDIS_PASSWORD_FILE`, `RENDERQ_REDIS_SENTINEL_PASSWORD_FILE`) when the URL carries
none, so they never sit in an environment variable or a command line, and are never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from renderq.settings import Settings, SettingsError

# Redis checks an idle connection with a PING before using it again after this many seconds.
_HEALTH_CHECK_INTERVAL = 15


def open_redis(settings: Settings, socket_timeout: float | None = None) -> redis.Redis:
    """A blocking client (the worker's); `socket_timeout` defaults to `redis_timeout`."""
    options = _options(settings, socket_timeout, redis.retry.Retry)
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    sentinels: Any = redis.sentinel.Sentinel  # redis-py leaves it untyped
    manager = sentinels(
        sentinel_addresses(settings), sentinel_kwargs=_sentinel_options(settings), **options
    )
    client: redis.Redis = manager.master_for(settings.redis_sentinel_master)
    return client


def open_async_redis(
    settings: Settings, socket_timeout: float | None = None
) -> redis.asyncio.Redis:
    """An asyncio client (the front's); `socket_timeout` defaults to `redis_timeout`."""
    options = _options(settings, socket_timeout, redis.asyncio.retry.Retry)
    if not settings.redis_sentinels:
        return redis.asyncio.Redis.from_url(settings.redis_url, **options)
    sentinels: Any = redis.asyncio.sentinel.Sentinel  # redis-py leaves it untyped
    manager = sentinels(
        sentinel_addresses(settings), sentinel_kwargs=_sentinel_options(settings), **options
    )
    client: redis.asyncio.Redis = manager.master_for(settings.redis_sentinel_master)
    return client


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    """`REDIS_SENTINELS` as (host, port) pairs."""
    addresses = []
    for item in settings.redis_sentinels.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(
                f"REDIS_SENTINELS={settings.redis_sentinels!r}: each Sentinel is host:port"
            )
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _options(settings: Settings, socket_timeout: float | None, retry_type: type) -> dict[str, Any]:
    """Keyword arguments for a client; `retry_type` is redis-py's sync or async Retry.

    Read the password files before dropping privileges: they are readable by renderq's users
    only.
    """
    url = urlsplit(settings.redis_url)
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout if socket_timeout is None else socket_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": _HEALTH_CHECK_INTERVAL,
        "retry": retry_type(ExponentialBackoff(cap=0.25, base=0.05), settings.redis_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    password = _read_file(settings.redis_password_file, "RENDERQ_REDIS_PASSWORD_FILE")
    if password is not None:
        options["password"] = password  # a password in REDIS_URL wins over this one
    if url.scheme == "rediss":
        options |= _tls_options(settings)
    if settings.redis_sentinels:
        # from_url is not used: take from the URL what is not the address.
        if url.username:
            options["username"] = unquote(url.username)
        if url.password:
            options["password"] = unquote(url.password)
        database = url.path.strip("/")
        options["db"] = int(database) if database.isdigit() else 0
        options["ssl"] = url.scheme == "rediss"
    return options


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: the same timeouts and TLS, their own password."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    password = _read_file(
        settings.redis_sentinel_password_file, "RENDERQ_REDIS_SENTINEL_PASSWORD_FILE"
    )
    if password is not None:
        options["password"] = password
    if urlsplit(settings.redis_url).scheme == "rediss":
        options |= {"ssl": True, **_tls_options(settings)}
    return options


def _tls_options(settings: Settings) -> dict[str, Any]:
    """The CA to check Redis's certificate against, read now (as the password files are):
    a worker connects again after it has dropped the privileges that could read it."""
    if not settings.redis_tls_ca_file:
        return {}
    return {"ssl_ca_data": _read_file(settings.redis_tls_ca_file, "RENDERQ_REDIS_TLS_CA_FILE")}


def _read_file(path: str, variable: str) -> str | None:
    """The contents of the file `path` (a secret, a CA), or None when no file is set."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{variable}={path!r} cannot be read: {exc.strerror}") from exc


def describe_redis(settings: Settings) -> str:
    """Where the settings point, for messages: the URL without its password, or the Sentinels."""
    if settings.redis_sentinels:
        return f"the primary {settings.redis_sentinel_master!r} of {settings.redis_sentinels}"
    return redacted_url(settings.redis_url)


def redacted_url(url: str) -> str:
    """`url` with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
