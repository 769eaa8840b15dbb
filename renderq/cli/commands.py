"""The commands about one job (`text`, `status`, `wait`, `cancel`) and the operators' ones
(`queue`, `dead-letters`), each on the blocking client. `image` is `renderq.cli.batch`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from renderq.cli.arguments import field_values
from renderq.cli.output import Output, describe
from renderq.client import Client, Job, NotFound, Result, Status
from renderq.client.rules import TextFields
from renderq.text_request import TEXT_FIELDS

# What an output file's extension says about the format wanted, when --format does not.
FORMATS_BY_EXTENSION = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
    ".gif": "gif",
    ".avif": "avif",
}

INTERRUPTED = 130


def client_for(args: argparse.Namespace) -> Client:
    return Client(args.url, api_key=args.api_key)


def format_for(output: Path) -> str | None:
    return FORMATS_BY_EXTENSION.get(output.suffix.lower())


def text(args: argparse.Namespace, out: Output) -> int:
    fields = field_values(args, TEXT_FIELDS)
    if "format" not in fields and format_for(args.output):
        fields["format"] = format_for(args.output)
    with client_for(args) as client:
        job = client.submit_text(args.text, **cast(TextFields, fields))
        return _wait_and_save(job, args, out)


def wait(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        return _wait_and_save(client.job(args.job_id), args, out)


def _wait_and_save(job: Job, args: argparse.Namespace, out: Output) -> int:
    try:
        result = job.wait(args.timeout)
    except KeyboardInterrupt:
        out.error(f"interrupted; job {job.id} is still queued or running: renderq wait {job.id}")
        return INTERRUPTED
    path = result.save(args.output)
    _saved(out, job.id, path, result)
    return 0


def _saved(out: Output, job_id: str, path: Path, result: Result) -> None:
    if out.as_json:
        out.json(
            {
                "job": job_id,
                "output": str(path),
                "content_type": result.content_type,
                "bytes": len(result.content),
            }
        )
    else:
        out.line(f"wrote {path} ({result.format}, {len(result.content)} bytes) from job {job_id}")


def status(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        _show_status(out, client.job(args.job_id).status())
    return 0


def cancel(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        _show_status(out, client.job(args.job_id).cancel())
    return 0


def _show_status(out: Output, found: Status) -> None:
    if out.as_json:
        out.json(found.document)
        return
    pairs = [(name, value) for name, value in found.document.items() if name != "error"]
    if found.error_code:
        pairs.append(("error", f"{found.error_code}: {found.error_message}"))
    out.fields(f"job {found.id}", pairs)


def queue(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        state = client.queue_state()
    if out.as_json:
        out.json(
            {key: state.get(key) for key in ("queue", "rate", "workers", "render_times", "sandbox")}
        )
        return 0
    numbers = state["queue"]
    totals = numbers.get("totals", {})
    rate = state.get("rate", {})
    out.fields(
        "queue",
        [
            ("depth", numbers["depth"]),
            ("waiting", numbers["waiting"]),
            ("running", numbers["running"]),
            ("dead letters", numbers["dead_letters"]),
            (f"jobs/s (last {rate.get('window_seconds', '?')} s)", rate.get("per_second")),
            *((f"{name} (total)", count) for name, count in totals.items()),
            ("sandbox", state.get("sandbox", {}).get("status")),
        ],
    )
    out.table("workers", *_worker_rows(state.get("workers", [])))
    return 0


def _worker_rows(workers: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    columns = ["worker", "alive", "holding", "jobs done", "job running (s)", "rss (MiB)", "up (s)"]
    rows = [
        [
            worker["name"],
            "yes" if worker.get("alive") else "no",
            worker.get("holding"),
            worker.get("jobs_done"),
            worker.get("job_seconds"),
            _mebibytes(worker.get("rss_bytes")),
            worker.get("up_seconds"),
        ]
        for worker in workers
    ]
    return columns, rows


def dead_letters_list(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        rows = client.queue_state().get("dead_letters", [])
    if out.as_json:
        out.json(rows)
        return 0
    columns = ["entry", "job tag", "status", "kind", "engine", "attempts", "code", "failed at"]
    keys = ["entry", "job", "status", "kind", "engine", "attempts", "code"]
    table = [[row.get(key) for key in keys] + [_when(row.get("failed_at"))] for row in rows]
    out.table(f"dead letters ({len(rows)} shown)", columns, table)
    return 0


def dead_letters_requeue(args: argparse.Namespace, out: Output) -> int:
    if not args.admin_token:
        out.error("requeueing needs the server's admin token: --admin-token or RENDERQ_ADMIN_TOKEN")
        return 2
    if bool(args.entries) == args.all:
        out.error("give ENTRY_ID... or --all")
        return 2
    with client_for(args) as client:
        if args.entries:
            return _requeue(client, args.entries, args.admin_token, out)
        # The dashboard shows the oldest 20: read again until none is left that was not tried.
        tried: set[str] = set()
        status = 0
        while batch := [entry for entry in _shown_entries(client) if entry not in tried]:
            status = max(status, _requeue(client, batch, args.admin_token, out))
            tried.update(batch)
        return status


def _shown_entries(client: Client) -> list[str]:
    return [str(row["entry"]) for row in client.queue_state().get("dead_letters", [])]


def _requeue(client: Client, entries: list[str], token: str, out: Output) -> int:
    """Requeue each entry; one already gone (or whose job expired) is reported, not fatal."""
    status = 0
    for entry in entries:
        try:
            answer = client.requeue_dead_letter(entry, token)
        except NotFound as exc:
            out.error(f"{entry}: {describe(exc)}")
            status = 1
            continue
        if out.as_json:
            out.json({"entry": entry, **answer})
        else:
            out.line(f"requeued {entry} (job tag {answer.get('job')})")
    return status


def _mebibytes(value: Any) -> float | None:
    return None if value is None else round(float(value) / 2**20, 1)


def _when(timestamp: Any) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(float(timestamp), UTC).isoformat(timespec="seconds")
