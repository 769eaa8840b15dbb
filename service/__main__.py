"""`python -m service`: run the HTTP front under uvicorn on $HOST:$PORT."""

from __future__ import annotations

import uvicorn

from renderq.logs import configure_logging
from renderq.settings import Settings
from service.app import create_app


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
