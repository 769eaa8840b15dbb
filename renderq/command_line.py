"""What the operators' commands (`worker.dead_letters`, `worker.events`, `worker.tap`,
`service.keys`) share: settings and a Redis connection, errors as one line on stderr,
output on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from renderq.redis_connection import describe_redis, open_redis
from renderq.settings import Settings, SettingsError


def run_with_redis(command: Callable[[Redis, Settings], int]) -> int:
    """Run `command` on the deployment's Redis; a bad setting or an unreachable Redis ends
    it with one line on stderr and exit status 1, not a traceback."""
    try:
        settings = Settings.from_env()
        redis = open_redis(settings)
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    try:
        with redis:
            return command(redis, settings)
    except RedisError as exc:
        sys.stderr.write(
            f"cannot reach Redis at {describe_redis(settings)} (set REDIS_URL and, for a "
            f"password, RENDERQ_REDIS_PASSWORD_FILE): {exc}\n"
        )
        return 1


def emit_line(line: str | dict[str, Any]) -> None:
    """One line on stdout, flushed (a pipe to `jq` or `grep` sees it at once); a dict as JSON."""
    sys.stdout.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    sys.stdout.flush()
