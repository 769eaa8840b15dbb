"""What the client says to the API and how it reads the answers, with no I/O of its own.

Every operation is a generator, a `Flow`: it yields the `Call`s to make and the `Pause`s to
take, is sent each call's answer, and returns the operation's value. `Client` runs flows with
blocking httpx and `AsyncClient` with asyncio, so retries, long polls, Idempotency-Keys and
the reading of every answer are written once, here, and the two transports stay thin.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeAlias, TypeVar
from urllib.parse import quote

import httpx2 as httpx

from renderq.client.errors import (
    CONNECTION_FAILED,
    WAIT_TIMEOUT,
    ConnectionFailed,
    WaitTimeout,
    error_from,
)
from renderq.client.results import Result, Status
from renderq.client.retry import Retry, retry_after
from renderq.client.rules import ImageFields, OperationLike, TextFields, image_form, text_body
from renderq.client.sources import ImageSource, opened

T = TypeVar("T")
logger = logging.getLogger("renderq.client")


@dataclass(frozen=True)
class Call:
    """One HTTP request to make; `holds` is how long the server may hold the answer (a long
    poll, `Prefer: wait`), added to the time allowed for reading it."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    json: Any = None
    data: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, IO[bytes], str]] | None = None
    holds: float = 0.0

    def arguments(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments of httpx's `request`, the same for its blocking and async clients."""
        return {
            "params": self.params,
            "headers": self.headers,
            "json": self.json,
            "data": self.data,
            "files": self.files,
            "timeout": httpx.Timeout(timeout, read=timeout + self.holds),
        }


@dataclass(frozen=True)
class Pause:
    seconds: float


Step: TypeAlias = Call | Pause
Reply: TypeAlias = httpx.Response | httpx.TransportError | None
Flow: TypeAlias = Generator[Step, Reply, T]
Submitted: TypeAlias = Status | Result  # a 202's job, or the image a `Prefer: wait` brought


def exchange(call: Call, retry: Retry, resendable: bool = True) -> Flow[httpx.Response]:
    """Make `call`, again as `retry` says while it gets a 503 or no answer; the last answer,
    whatever its status. A call whose body cannot be sent twice is made once."""
    give_up = time.monotonic() + retry.within
    attempt = 0
    while True:
        reply = yield call
        assert reply is not None, "a Call is answered with a response or a transport error"
        delay = retry.delay(attempt, reply) if resendable else None
        if delay is None or time.monotonic() + delay > give_up:
            break
        logger.info("renderq: retrying %s %s in %.2f s after %s", *_described(call, reply, delay))
        yield Pause(delay)
        attempt += 1
    if isinstance(reply, httpx.TransportError):
        raise ConnectionFailed(
            CONNECTION_FAILED, f"no answer to {call.method} {call.path}: {reply!r}"
        ) from reply
    return reply


class Flows:
    """The flow of each operation of the API, for a client's retries and longest long poll
    (`max_wait`, lowered to what the server allows when it refuses a longer `?wait=`)."""

    def __init__(self, retry: Retry, max_wait: int) -> None:
        self.retry = retry
        self.max_wait = max_wait

    def submit_text(
        self, text: str, fields: TextFields, key: str | None, prefer_wait: int | None = None
    ) -> Flow[Submitted]:
        """Checked now, before the flow runs, so a broken rule raises before anything is sent."""
        call = Call(
            "POST",
            "/jobs",
            json=text_body(text, fields),
            headers=_submit_headers(key, prefer_wait),
            holds=prefer_wait or 0,
        )
        return self._submit(call)

    def submit_image(
        self,
        source: ImageSource,
        ops: Sequence[OperationLike],
        fields: ImageFields,
        key: str | None,
        prefer_wait: int | None = None,
    ) -> Flow[Submitted]:
        form = image_form(ops, fields)
        return self._upload(source, form, _submit_headers(key, prefer_wait), prefer_wait or 0)

    def render(
        self, submit: Callable[[int], Flow[Submitted]], timeout: float | None
    ) -> Flow[Result]:
        """Submit with `Prefer: wait` (`submit` makes the flow for a wait in seconds), then
        long-poll for what remains of `timeout` if the job had not ended by the answer."""
        started = time.monotonic()
        answer = yield from submit(int(min(self.max_wait, _or_forever(timeout))))
        if isinstance(answer, Result):
            return answer
        remaining = None if timeout is None else timeout - (time.monotonic() - started)
        return (yield from self.wait(answer.id, remaining))

    def wait(
        self, job_id: str, timeout: float | None, seen: Callable[[Status], None] | None = None
    ) -> Flow[Result]:
        """Long-poll until the job ends (its image, or its error raised) or `timeout` passes
        (`WaitTimeout`); `seen` gets each status document on the way."""
        give_up = time.monotonic() + _or_forever(timeout)
        while True:
            holds = int(max(0.0, min(self.max_wait, give_up - time.monotonic())))
            asked = time.monotonic()
            call = Call("GET", job_path(job_id), params={"wait": str(holds)}, holds=holds)
            response = yield from exchange(call, self.retry)
            if holds and _wait_refused(response):
                # The server's RENDERQ_MAX_WAIT is shorter than `max_wait`: ask for less.
                self.max_wait = min(self.max_wait, holds // 2)
                continue
            answer = _polled(response, job_id)
            if isinstance(answer, Result):
                return answer
            if seen is not None:
                seen(answer.status)
            left = give_up - time.monotonic()
            if left <= 0:
                message = f"the job did not end within {timeout} s: it is {answer.status.state}"
                raise WaitTimeout(WAIT_TIMEOUT, message, job_id=job_id)
            if time.monotonic() - asked < holds / 2 or holds == 0:
                # Answered before the time asked (or asked not to wait): come back as it says.
                yield Pause(min(left, retry_after(answer.response) or 1.0))

    def status(self, job_id: str) -> Flow[Status]:
        response = yield from exchange(Call("GET", f"{job_path(job_id)}/status"), self.retry)
        return Status.from_document(_expect(response, 200, job_id).json())

    def cancel(self, job_id: str) -> Flow[Status]:
        response = yield from exchange(Call("DELETE", job_path(job_id)), self.retry)
        return Status.from_document(_expect(response, 200, job_id).json())

    def fetch_json(self, path: str, headers: Mapping[str, str] | None = None) -> Flow[Any]:
        """GET a JSON document (`/fonts`, `/dashboard/state`)."""
        response = yield from exchange(Call("GET", path, headers=headers), self.retry)
        return _expect(response, 200).json()

    def requeue_dead_letter(self, entry_id: str, admin_token: str) -> Flow[dict[str, Any]]:
        """Put a dead letter's job back on the queue (needs `RENDERQ_ADMIN_TOKEN`)."""
        path = f"/dashboard/dead-letters/{quote(entry_id, safe='')}/requeue"
        headers = {"Authorization": f"Bearer {admin_token}"}
        response = yield from exchange(Call("POST", path, headers=headers), self.retry)
        document: dict[str, Any] = _expect(response, 200).json()
        return document

    def _submit(self, call: Call) -> Flow[Submitted]:
        return _submitted((yield from exchange(call, self.retry)))

    def _upload(
        self, source: ImageSource, form: dict[str, str], headers: dict[str, str], holds: int
    ) -> Flow[Submitted]:
        with opened(source) as upload:
            files = {"file": (upload.name, upload.file, "application/octet-stream")}
            call = Call("POST", "/jobs", headers=headers, data=form, files=files, holds=holds)
            response = yield from exchange(call, self.retry, upload.rewindable)
        return _submitted(response)


@dataclass(frozen=True)
class _NotReady:
    status: Status
    response: httpx.Response


def job_path(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def new_idempotency_key() -> str:
    """One per logical submit: every retry of it carries the same, so it queues one job."""
    return secrets.token_urlsafe(24)


def _submit_headers(key: str | None, prefer_wait: int | None) -> dict[str, str]:
    headers = {"Idempotency-Key": key or new_idempotency_key()}
    if prefer_wait is not None:
        headers["Prefer"] = f"wait={prefer_wait}"
    return headers


def _submitted(response: httpx.Response) -> Submitted:
    """A POST's answer: 202 and the job, or with `Prefer: wait` the job's own answer, which
    names it in `Content-Location`."""
    job_id = response.headers.get("content-location", "").rpartition("/jobs/")[2] or None
    if response.status_code == 202:
        return Status.from_document(response.json())
    if response.status_code == 200 and job_id is not None:
        return _result(response, job_id)
    raise error_from(response, job_id, job_answer=job_id is not None)


def _polled(response: httpx.Response, job_id: str) -> Result | _NotReady:
    if response.status_code == 200:
        return _result(response, job_id)
    if response.status_code == 202:
        return _NotReady(Status.from_document(response.json()), response)
    raise error_from(response, job_id, job_answer=True)


def _wait_refused(response: httpx.Response) -> bool:
    """A 422 on the poll's `wait`: longer than the server allows."""
    if response.status_code != 422:
        return False
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("field") == "wait"


def _result(response: httpx.Response, job_id: str) -> Result:
    content_type = response.headers.get("content-type", "application/octet-stream")
    return Result(response.content, content_type, job_id)


def _expect(response: httpx.Response, status: int, job_id: str | None = None) -> httpx.Response:
    if response.status_code != status:
        raise error_from(response, job_id)
    return response


def _or_forever(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


def _described(
    call: Call, reply: httpx.Response | httpx.TransportError, delay: float
) -> tuple[str, str, float, str]:
    what = repr(reply) if isinstance(reply, httpx.TransportError) else f"HTTP {reply.status_code}"
    return call.method, call.path, delay, what
