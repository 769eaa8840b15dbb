"""`renderq`, the command line: render text and images, follow jobs, watch the queue.

Each command is a function of the parsed arguments and the `Output`; `main` parses, runs
one, and turns the client's errors into one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from renderq.cli import batch, commands
from renderq.cli.arguments import build_parser
from renderq.cli.output import Output, describe
from renderq.client import RenderqError
from renderq.client.errors import RefusedBeforeSending

COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Output], int]]] = {
    "text": commands.text,
    "image": batch.image,
    "status": commands.status,
    "wait": commands.wait,
    "cancel": commands.cancel,
    "queue": commands.queue,
    "dead-letters list": commands.dead_letters_list,
    "dead-letters requeue": commands.dead_letters_requeue,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; its exit status (0 done, 1 failed, 2 bad usage, 130 interrupted)."""
    args = build_parser(os.environ if environ is None else environ).parse_args(argv)
    out = Output(as_json=args.json)
    try:
        return COMMANDS[args.command](args, out)
    except RenderqError as exc:
        if out.as_json:
            out.json({"error": {"code": exc.code, "message": exc.message, "field": exc.field}})
        out.error(describe(exc) + (f" (job {exc.job_id})" if exc.job_id else ""))
        return 2 if isinstance(exc, RefusedBeforeSending) else 1
    except OSError as exc:
        out.error(str(exc))
        return 1
    except KeyboardInterrupt:
        out.error("interrupted")
        return commands.INTERRUPTED
