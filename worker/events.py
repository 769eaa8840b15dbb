"""`python -m worker.events`: read the job events (see `renderq.job_events`) in a terminal.

    python -m worker.events tail              # follow new events live, until Ctrl-C
    python -m worker.events tail --last 20    # the 20 latest first, then follow
    python -m worker.events list --last 100   # the latest events, then exit

One JSON object per line on stdout, oldest first, so `jq` and `grep` work on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from redis import Redis

from renderq.command_line import emit_line, run_with_redis
from renderq.job_events import JobEvent
from renderq.job_tags import as_text
from renderq.keys import Keys

# How long one blocking read waits before it is made again (Ctrl-C is seen between).
_BLOCK_MS = 1000


def latest_events(redis: Redis, keys: Keys, count: int) -> list[tuple[str, JobEvent]]:
    """The `count` latest events with their entry ids, oldest first."""
    if count <= 0:
        return []
    entries: Any = redis.xrevrange(keys.events, count=count)
    return [(as_text(entry_id), JobEvent.parse(fields)) for entry_id, fields in reversed(entries)]


def follow_events(redis: Redis, keys: Keys, after: str) -> Iterator[tuple[str, JobEvent]]:
    """Every event appended after entry `after` ("$": from now on), as it comes."""
    last = after
    while True:
        reply: Any = redis.xread({keys.events: last}, block=_BLOCK_MS)
        if last == "$" and not reply:
            # Resolve "$" once, so an event appended between two reads is not skipped.
            newest: Any = redis.xrevrange(keys.events, count=1)
            last = as_text(newest[0][0]) if newest else "0-0"
            continue
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = as_text(entry_id)
                yield last, JobEvent.parse(fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.events", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text, last in (
        ("tail", "follow new events live", 0),
        ("list", "print the latest events and exit", 50),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--last", type=int, default=last, help="latest events to show first")
    args = parser.parse_args(argv)
    return run_with_redis(lambda redis, settings: _show(args, redis, Keys(settings.key_prefix)))


def _show(args: argparse.Namespace, redis: Redis, keys: Keys) -> int:
    latest = latest_events(redis, keys, args.last)
    for _, event in latest:
        emit_line(event.as_dict())
    if args.command == "tail":
        try:
            for _, event in follow_events(redis, keys, latest[-1][0] if latest else "$"):
                emit_line(event.as_dict())
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a tail ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
