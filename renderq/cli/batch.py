"""`renderq image`: one image to a file, or many to a directory, with bounded concurrency.

Every image is submitted and waited for by its own task on one `AsyncClient`; a semaphore
keeps `--concurrency` of them in flight, and each result is written as it arrives. Ctrl-C
cancels the tasks (asyncio turns SIGINT into a cancellation of the run), then the jobs that
are still queued or running are listed: nothing is cancelled on the server behind your back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from renderq.cli.arguments import field_values, operations
from renderq.cli.commands import INTERRUPTED, format_for
from renderq.cli.output import Output
from renderq.cli.progress import Display, Tally
from renderq.client import AsyncClient, RenderqError, Result
from renderq.client.rules import ImageFields, OperationLike, image_form
from renderq.image_request import IMAGE_FIELDS


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit status 2)."""


@dataclass(frozen=True)
class Plan:
    inputs: list[Path]
    output: Path
    to_file: bool  # one input written to `output` itself, else into the directory `output`
    ops: list[OperationLike]
    fields: ImageFields

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        """Checked before anything is sent: the ops and fields, and that no two inputs
        would be written to one name."""
        output = Path(args.output)  # given as text: "out/" names a directory, Path drops the /
        to_file = len(args.inputs) == 1 and not output.is_dir() and not args.output.endswith(os.sep)
        fields = field_values(args, IMAGE_FIELDS)
        if to_file and "format" not in fields and format_for(output):
            fields["format"] = format_for(output)
        plan = cls(list(args.inputs), output, to_file, operations(args), cast(ImageFields, fields))
        image_form(plan.ops, plan.fields)
        if not to_file:
            clashes = [stem for stem, n in Counter(p.stem for p in plan.inputs).items() if n > 1]
            if clashes:
                raise UsageError(
                    f"several inputs are named {clashes[0]!r}: their results would clash"
                )
            output.mkdir(parents=True, exist_ok=True)
        return plan

    def target(self, source: Path, result: Result) -> Path:
        target = self.output if self.to_file else self.output / f"{source.stem}{result.extension}"
        if any(target.resolve() == path.resolve() for path in self.inputs):
            raise FileExistsError(f"{target} is an input: not overwritten")
        return target


def image(args: argparse.Namespace, out: Output) -> int:
    try:
        plan = Plan.of(args)
    except UsageError as exc:
        out.error(str(exc))
        return 2
    tally = Tally(len(plan.inputs))
    display = Display(out, tally, plan.output)
    try:
        with display:
            asyncio.run(_run(plan, args, display))
    except KeyboardInterrupt:
        display.interrupted()
        return INTERRUPTED
    display.summary()
    return 1 if tally.failures else 0


async def _run(plan: Plan, args: argparse.Namespace, display: Display) -> None:
    limit = asyncio.Semaphore(args.concurrency)
    ticker = asyncio.create_task(display.ticking())
    try:
        async with (
            AsyncClient(args.url, api_key=args.api_key) as client,
            asyncio.TaskGroup() as group,
        ):
            for path in plan.inputs:
                group.create_task(_one(client, plan, path, limit, display, args.timeout))
    finally:
        ticker.cancel()


async def _one(
    client: AsyncClient,
    plan: Plan,
    path: Path,
    limit: asyncio.Semaphore,
    display: Display,
    timeout: float,
) -> None:
    async with limit:
        display.submitting(path)
        try:
            job = await client.submit_image(path, plan.ops, **plan.fields)
        except (RenderqError, OSError) as exc:
            display.failed(path, exc)
            return
        display.queued(path, job)
        try:
            result = await job.wait(timeout)
            target = plan.target(path, result)
            result.save(target)
        except (RenderqError, OSError) as exc:
            display.failed(path, exc, job.id)
            return
        display.finished(path, job.id, target)
