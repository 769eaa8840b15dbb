"""How the front and the workers connect to Redis: timeouts, and retries with backoff.

A dropped connection or a Redis restart is retried a few times with exponential backoff
before the error reaches the caller (the front then answers 503; the worker backs off too).
"""

from __future__ import annotations

from typing import Any

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from renderq.settings import Settings


def connection_options(settings: Settings, retry_type: type) -> dict[str, Any]:
    """Keyword arguments for `Redis.from_url`; `retry_type` is redis-py's sync or async Retry."""
    return {
        "socket_connect_timeout": 2,
        "health_check_interval": 15,
        "retry": retry_type(ExponentialBackoff(cap=1.0, base=0.05), settings.redis_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
