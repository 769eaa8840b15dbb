"""How a worker process (a worker or a tap) stops: the first SIGTERM or SIGINT asks it to
finish the job in hand and exit; a second one abandons that job at once."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from renderq.logs import log_event


class StopSignals:
    """Set `requested` on the first signal, exit on the second; handlers only set a flag, which
    the loop checks between jobs."""

    def __init__(self, logger: logging.Logger, event: str, **fields: Any) -> None:
        self.requested = False
        self._logger = logger
        self._event = event
        self._fields = fields

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise SystemExit(1)  # second signal: abandon the job in hand
        self.requested = True
        log_event(self._logger, self._event, signal=signal.Signals(signum).name, **self._fields)
