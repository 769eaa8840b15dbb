"""`python -m service`: run the HTTP front under uvicorn on $HOST:$PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn

from renderq.logs import configure_logging, log_event
from renderq.settings import Settings
from service.app import create_app

logger = logging.getLogger("renderq.service")


def main() -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if settings.sandbox_test_hook:
        message = "RENDERQ_SANDBOX_TEST_HOOK is for tests only: unset it"
        log_event(logger, "front_refused_to_start", logging.ERROR, error=message)
        return 2
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
