"""`python -m worker`: run one worker until signalled or its run limits are reached."""

from __future__ import annotations

import logging
import os
import sys

from redis import Redis
from redis.retry import Retry

from renderq.logs import configure_logging, log_event
from renderq.redis_options import connection_options
from renderq.settings import Settings
from worker.confinement import ConfinementError, drop_privileges
from worker.loop import Worker

logger = logging.getLogger("renderq.worker")


def main() -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    try:
        if os.geteuid() == 0:
            # Before anything touches a job: a worker never holds root while it works.
            drop_privileges(settings.worker_user)
            log_event(logger, "privileges_dropped", user=settings.worker_user)
        # The socket timeout must outlast the longest blocking read on the stream.
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.worker_block_ms / 1000 + 10,
            **connection_options(settings, Retry),
        )
        worker = Worker(settings, redis)
        worker.install_signal_handlers()
        worker.run()
    except ConfinementError as exc:
        log_event(logger, "worker_refused_to_start", logging.ERROR, error=str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
