"""`python -m service.keys`: create, list, update and revoke API keys (see `renderq.api_keys`).

    python -m service.keys create NAME [--rate R] [--burst B] [--max-queued N] [--admin]
    python -m service.keys list
    python -m service.keys update NAME [--rate R] [--burst B] [--max-queued N] [--admin|--no-admin]
    python -m service.keys revoke NAME

`create` prints the new key once, alone on stdout (Redis keeps only its salted hash); `list`
prints one JSON object per key. Every front sees a change within a second. Exit status: 0
done, 1 no such key (or NAME has one already, for create) or Redis unreachable, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from redis import Redis

from renderq.api_keys import KeyLimits, create_key, list_keys, revoke_key, update_key
from renderq.command_line import emit_line, run_with_redis
from renderq.keys import Keys
from renderq.settings import Settings
from renderq.tenants import DEFAULT_TENANT, TENANT_NAME_PATTERN, is_tenant_name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (once)")
    update = commands.add_parser("update", help="change a key's limits, keeping the key")
    for command in (create, update):
        command.add_argument("name", metavar="NAME", help=f"the tenant: {TENANT_NAME_PATTERN}")
        command.add_argument("--rate", type=float, help="submissions a second (0: no limit)")
        command.add_argument("--burst", type=int, help="submissions at once (default: the rate)")
        command.add_argument("--max-queued", type=int, help="jobs waiting at once (0: no cap)")
    create.add_argument("--admin", action="store_true", help="may use the operators' routes")
    update.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None)
    commands.add_parser("list", help="list the keys and their limits (never the keys)")
    revoke = commands.add_parser("revoke", help="delete a key: it stops working at once")
    revoke.add_argument("name", metavar="NAME")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    name = getattr(args, "name", None)
    if name is not None and not is_tenant_name(name):
        parser.error(f"NAME must match {TENANT_NAME_PATTERN}; got {name!r}")
    if args.command == "create" and name == DEFAULT_TENANT:
        # The implicit tenant of RENDERQ_AUTH=off: its key would see every job queued then.
        parser.error(f"{DEFAULT_TENANT!r} is the implicit tenant of RENDERQ_AUTH=off; pick another")
    changes = _changes(args)
    try:
        limits = KeyLimits(**changes)  # checks the values before anything is stored
    except ValueError as exc:
        parser.error(str(exc))
    return run_with_redis(lambda redis, settings: _run(args, changes, limits, redis, settings))


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given on the command line, by `KeyLimits` field."""
    given = {
        "rate": getattr(args, "rate", None),
        "burst": getattr(args, "burst", None),
        "max_queued": getattr(args, "max_queued", None),
        "admin": getattr(args, "admin", None),
    }
    return {field: value for field, value in given.items() if value is not None}


def _run(
    args: argparse.Namespace,
    changes: dict[str, Any],
    limits: KeyLimits,
    redis: Redis,
    settings: Settings,
) -> int:
    keys = Keys(settings.key_prefix)
    if args.command == "list":
        for stored in list_keys(redis, keys):
            emit_line(stored.summary())
        return 0
    if args.command == "create":
        text = create_key(redis, keys, args.name, limits)
        if text is None:
            return _fail(f"{args.name!r} has a key already: revoke it first, or update it")
        emit_line(text)
        return 0
    if args.command == "update":
        updated = update_key(redis, keys, args.name, changes)
        return _fail(f"no key named {args.name!r}") if updated is None else _done(updated.summary())
    if not revoke_key(redis, keys, args.name):
        return _fail(f"no key named {args.name!r}")
    return _done({"revoked": args.name})


def _done(line: dict[str, Any]) -> int:
    emit_line(line)
    return 0


def _fail(message: str) -> int:
    sys.stderr.write(f"{message}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
