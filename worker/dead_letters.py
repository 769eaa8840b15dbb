"""`python -m worker.dead_letters`: list and requeue jobs that failed with too_many_attempts.

A job whose every delivery died with its worker ends `failed` with `too_many_attempts` and an
entry on the dead-letter stream. Once the cause is fixed, an operator requeues it:

    python -m worker.dead_letters list
    python -m worker.dead_letters requeue JOB_ID [JOB_ID ...]
    python -m worker.dead_letters requeue --all

Output is one JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from redis import Redis

from renderq.command_line import emit_line, run_with_redis
from renderq.jobs import Job, is_job_id
from renderq.keys import Keys
from renderq.queue_protocol import QueueLimits
from renderq.replication import ReplicaAcks
from renderq.settings import Settings
from worker.queue import requeue_job


def dead_letters(redis: Redis, keys: Keys) -> list[tuple[str, str, Job | None]]:
    """(entry id, job id, job or None if it expired) for every dead-lettered job, oldest first."""
    entries: Any = redis.xrange(keys.dead_letters)
    found = []
    for entry_id, fields in entries:
        job_id = fields[b"id"].decode()
        raw = redis.hgetall(keys.job(job_id))
        found.append((entry_id.decode(), job_id, Job.from_redis(raw) if raw else None))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.dead_letters", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list dead-lettered jobs")
    again = commands.add_parser("requeue", help="put dead-lettered jobs back on the queue")
    again.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    again.add_argument("--all", action="store_true", help="requeue every dead-lettered job")
    # A job id may start with "-", which argparse would take for an option: such arguments
    # come back unparsed, and are job ids when they have a job id's shape.
    args, unparsed = parser.parse_known_args(argv)
    strays = [arg for arg in unparsed if args.command != "requeue" or not is_job_id(arg)]
    if strays:
        parser.error(f"unrecognized arguments: {' '.join(strays)}")
    if args.command == "requeue":
        args.job_ids = [*args.job_ids, *unparsed]
    if args.command == "requeue" and not (args.all or args.job_ids):
        parser.error("requeue needs JOB_ID arguments or --all")
    return run_with_redis(lambda redis, settings: _run(args, redis, settings))


def _run(args: argparse.Namespace, redis: Redis, settings: Settings) -> int:
    keys, limits = Keys(settings.key_prefix), QueueLimits.of(settings)
    acks = ReplicaAcks(settings.replica_ack_timeout_ms)
    wanted = set(args.job_ids) if args.command == "requeue" else set()
    for entry_id, job_id, job in dead_letters(redis, keys):
        if args.command == "list":
            emit_line({"id": job_id, **(job.status_document() if job else {"status": "expired"})})
        elif args.all or job_id in wanted:
            emit_line(
                {"id": job_id, "requeued": requeue_job(redis, keys, entry_id, job_id, limits, acks)}
            )
            wanted.discard(job_id)
    for job_id in sorted(wanted):
        emit_line({"id": job_id, "requeued": False, "reason": "not in the dead letters"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
