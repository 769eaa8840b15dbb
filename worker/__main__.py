"""`python -m worker`: run one worker until signalled or its run limits are reached."""

from __future__ import annotations

from redis import Redis

from renderq.logs import configure_logging
from renderq.settings import Settings
from worker.loop import Worker


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    # The socket timeout must outlast the longest blocking read on the stream.
    redis = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=settings.worker_block_ms / 1000 + 10,
        health_check_interval=15,
    )
    worker = Worker(settings, redis)
    worker.install_signal_handlers()
    worker.run()


if __name__ == "__main__":
    main()
