"""`python -m worker`: run one worker until signalled or its run limits are reached.

Started as root (as supervisord does), the worker starts its sandbox as the render user, opens
its Redis connection (reading the password file), then drops to `RENDERQ_WORKER_USER` for
good before it takes any job. Exit status: 0 after a clean stop, 2 when the sandbox or the
settings refuse to start, 3 when the sandbox failed while running (supervisord restarts it).

`python -m worker --tap NAME [--engine pillow|imagemagick]` starts the same way but runs a
tap instead (see `worker.tap`): it renders copies of production's jobs and compares.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import pwd
import sys
from typing import Final

from renderq.logs import configure_logging, log_event
from renderq.redis_connection import open_redis
from renderq.settings import Settings, SettingsError
from renderq.vocabulary import ENGINES
from worker.loop import Worker
from worker.sandbox import ConfinementError, Sandbox
from worker.tap.loop import Tap
from worker.tap.store import tap_name

logger = logging.getLogger("renderq.worker")

# An upload passes through the worker on its way to a child: the worker keeps no reference
# to it once sent, and its freed copies do not linger either. Allocations from 64 KiB up get
# mappings of their own, returned to the kernel when freed, and glibc overwrites every
# smaller block it frees (M_PERTURB).
_M_MMAP_THRESHOLD: Final = -3
_MMAP_THRESHOLD_BYTES: Final = 64 * 1024
_M_PERTURB: Final = -6
_PERTURB_BYTE: Final = 0xA5


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.engine is not None and options.tap is None:
        parser.error("--engine is for a tap: give --tap NAME too")
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if settings.sandbox_test_hook:
        log_event(
            logger,
            "worker_refused_to_start",
            logging.ERROR,
            error="RENDERQ_SANDBOX_TEST_HOOK is for tests only: unset it",
        )
        return 2
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_PERTURB, _PERTURB_BYTE)
    try:
        sandbox = Sandbox(settings, _worker_uid(settings))
        sandbox.start()
        # A reply may take as long as the longest blocking read of the stream, and no longer.
        redis = open_redis(
            settings, socket_timeout=settings.worker_block_ms / 1000 + settings.redis_timeout
        )
        if os.geteuid() == 0:
            drop_privileges(settings.worker_user)
            log_event(logger, "privileges_dropped", user=settings.worker_user)
    except (ConfinementError, SettingsError) as exc:
        log_event(logger, "worker_refused_to_start", logging.ERROR, error=str(exc))
        return 2
    worker: Worker | Tap
    if options.tap is None:
        worker = Worker(settings, redis, sandbox=sandbox)
    else:
        worker = Tap(settings, redis, options.tap, options.engine, sandbox=sandbox)
    worker.stop.install()
    try:
        worker.run()
    except ConfinementError as exc:
        log_event(logger, "sandbox_failed", logging.ERROR, error=str(exc))
        return 3
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--tap", type=tap_name, metavar="NAME", help="run a tap named NAME")
    parser.add_argument("--engine", choices=ENGINES, help="the tap renders every job with this")
    return parser


def _worker_uid(settings: Settings) -> int:
    """The uid the worker will run as once it has dropped root."""
    if os.geteuid() != 0:
        return os.getuid()
    try:
        return pwd.getpwnam(settings.worker_user).pw_uid
    except KeyError as exc:
        raise ConfinementError(
            f"started as root, but the user {settings.worker_user!r} does not exist"
        ) from exc


def drop_privileges(user: str) -> None:
    """Become `user` for good: groups, then gid, then uid (after which none can be regained)."""
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)


if __name__ == "__main__":
    sys.exit(main())
