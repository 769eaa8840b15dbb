"""`python -m worker.tap`: read a tap's comparisons with production, or remove the tap.

    python -m worker.tap report NAME [--last N] [--json]
    python -m worker.tap remove NAME

`report` prints one row per job compared (oldest first) and a summary; with `--json`, one
JSON object per job and then the summary, one per line. `remove` unregisters the tap
(production stops copying jobs for it at once) and deletes its stream, comparisons and
results; stop its processes first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from redis import Redis

from renderq.command_line import emit_line, run_with_redis
from renderq.keys import Keys
from worker.tap import store
from worker.tap.record import JobComparison, Side, Summary

_COLUMNS = ("job", "kind", "engine", "production", "tap", "size", "format", "diff", "ms")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_with_redis(lambda redis, settings: _run(args, redis, Keys(settings.key_prefix)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker.tap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="print how the tap's renders compare")
    report.add_argument("name", type=store.tap_name, metavar="NAME")
    report.add_argument("--last", type=int, metavar="N", help="only the N latest jobs")
    report.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    remove = commands.add_parser("remove", help="unregister the tap, delete what it stored")
    remove.add_argument("name", type=store.tap_name, metavar="NAME")
    return parser


def _run(args: argparse.Namespace, redis: Redis, keys: Keys) -> int:
    if args.command == "remove":
        deleted = store.remove(redis, keys, args.name)
        emit_line({"tap": args.name, "removed": True, "keys_deleted": deleted})
        return 0
    found = store.comparisons(redis, keys, args.name, args.last)
    summary = Summary.of(found)
    if args.json:
        for comparison in found:
            emit_line(dataclasses.asdict(comparison))
        emit_line({"summary": dataclasses.asdict(summary)})
        return 0
    if not found:
        registered = store.is_registered(redis, keys, args.name)
        emit_line(f"tap {args.name}: no comparisons yet ({'' if registered else 'not '}registered)")
        return 0
    emit_line(f"tap {args.name}, oldest first; where the two differ: production's / the tap's")
    emit_line(_table([_COLUMNS, *(_row(comparison) for comparison in found)]))
    emit_line("")
    emit_line(_summary_lines(summary))
    return 0


def _row(found: JobComparison) -> tuple[str, ...]:
    production, tap = sides = found.production, found.tap
    diff = "-" if found.diff_mean is None else f"{found.diff_mean:.2f} max {found.diff_max}"
    if found.compare_error is not None:
        diff = f"not compared: {found.compare_error}"
    return (
        found.job,
        found.kind,
        _pair(production.engine, tap.engine),
        _outcome(production),
        _outcome(tap),
        _pair(*(f"{s.image.width}x{s.image.height}" if s.image else "-" for s in sides)),
        _pair(*(s.image.format if s.image else "-" for s in sides)),
        diff,
        _pair(*("-" if s.ms is None else f"{s.ms:.0f}" for s in sides)),
    )


def _pair(production: str, tap: str) -> str:
    """One value when both sides agree, else production's and the tap's."""
    return production if production == tap else f"{production} / {tap}"


def _outcome(side: Side) -> str:
    return side.status if side.code is None else f"{side.status} ({side.code})"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = (
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
    return "\n".join(line.rstrip() for line in lines)


def _summary_lines(summary: Summary) -> str:
    lines = [
        f"jobs compared: {summary.jobs}",
        f"same size: {summary.same_size} of {summary.both_images} with both images;"
        f" same format: {summary.same_format} of {summary.both_images}",
    ]
    if summary.diff_mean is None:
        lines.append("pixel difference: no job with two images of one size")
    else:
        lines.append(
            f"pixel difference (R, G, B and A, 0 to 255) in {summary.pixels_compared} of"
            f" {summary.jobs} jobs: mean {summary.diff_mean:.2f}, max {summary.diff_max}"
        )
    lines.append(
        f"failures: production {summary.production_failed}, tap {summary.tap_failed};"
        f" outcome differs: {summary.outcome_differs};"
        f" production not ended in time: {summary.production_not_ended};"
        f" comparisons failed: {summary.compare_failed}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
