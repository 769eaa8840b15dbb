"""The blocking client: `Client` and the `Job` handles it returns.

Each method builds its operation's flow (`renderq.client.protocol`) and runs it here with
httpx's blocking client; all the logic is in the flows, shared with `AsyncClient`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack, cast

import httpx2 as httpx

from renderq.client.http import DEFAULT_URL, client_headers
from renderq.client.protocol import Flow, Flows, Pause, Reply, Step, Submitted
from renderq.client.results import Result, Status
from renderq.client.retry import Retry
from renderq.client.rules import ImageFields, OperationLike, TextFields
from renderq.client.sources import ImageSource

T = TypeVar("T")


class Client:
    """A renderq API at `base_url`. `api_key` is sent as a bearer token; `timeout` bounds
    each request (a long poll gets its wait on top); `retry` says how long a 503 or a lost
    connection is tried again; `max_wait` is the longest `?wait=` asked for (lowered when the
    server's `RENDERQ_MAX_WAIT` is shorter). Use it as a context manager, or `close()` it."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: Retry | None = None,
        max_wait: int = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.flows = Flows(retry or Retry(), max_wait)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url, headers=client_headers(api_key), transport=transport
        )

    def submit_text(
        self, text: str, *, idempotency_key: str | None = None, **fields: Unpack[TextFields]
    ) -> Job:
        """Queue a text job; its `Job` at once (202)."""
        return self._job(self.flows.submit_text(text, fields, idempotency_key))

    def submit_image(
        self,
        source: ImageSource,
        ops: Sequence[OperationLike] = (),
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> Job:
        """Queue an image job on `source` (a path, bytes or a binary file, streamed)."""
        return self._job(self.flows.submit_image(source, ops, fields, idempotency_key))

    def render_text(
        self,
        text: str,
        *,
        timeout: float | None = 60.0,
        idempotency_key: str | None = None,
        **fields: Unpack[TextFields],
    ) -> Result:
        """Submit and wait in one call: the image, or the job's error raised."""
        flows = self.flows
        return self.run(
            flows.render(lambda s: flows.submit_text(text, fields, idempotency_key, s), timeout)
        )

    def render_image(
        self,
        source: ImageSource,
        ops: Sequence[OperationLike] = (),
        *,
        timeout: float | None = 60.0,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> Result:
        flows = self.flows

        def submit(seconds: int) -> Flow[Submitted]:
            return flows.submit_image(source, ops, fields, idempotency_key, seconds)

        return self.run(flows.render(submit, timeout))

    def job(self, job_id: str) -> Job:
        """A handle on a job submitted earlier, by its id."""
        return Job(self, job_id)

    def fonts(self) -> list[str]:
        return list(self.run(self.flows.fetch_json("/fonts"))["fonts"])

    def queue_state(self) -> dict[str, Any]:
        """The dashboard's document (`GET /dashboard/state`): queue, rate, workers, dead letters."""
        return cast(dict[str, Any], self.run(self.flows.fetch_json("/dashboard/state")))

    def requeue_dead_letter(self, entry_id: str, admin_token: str) -> dict[str, Any]:
        return self.run(self.flows.requeue_dead_letter(entry_id, admin_token))

    def run(self, flow: Flow[T]) -> T:
        """Run an operation's flow to its end."""
        reply: Reply = None
        try:
            while True:
                reply = self._perform(flow.send(reply))
        except StopIteration as end:
            return cast(T, end.value)
        finally:
            flow.close()

    def _perform(self, step: Step) -> Reply:
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            return None
        try:
            return self._http.request(step.method, step.path, **step.arguments(self.timeout))
        except httpx.TransportError as exc:
            return exc

    def _job(self, flow: Flow[Submitted]) -> Job:
        status = self.run(flow)
        assert isinstance(status, Status), "a submit without Prefer: wait answers 202"
        return Job(self, status.id, status)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Job:
    """A submitted job. `last_status` is the newest status document seen (at submit, then
    at each poll that found it not ended)."""

    def __init__(self, client: Client, job_id: str, status: Status | None = None) -> None:
        self.client = client
        self.id = job_id
        self.last_status = status

    def wait(self, timeout: float | None = 60.0) -> Result:
        """Long-poll until the job ends: its image, or its error raised (`JobFailed`,
        `JobCancelled`...); `WaitTimeout` after `timeout` seconds (None: no limit)."""
        return self.client.run(self.client.flows.wait(self.id, timeout, self._seen))

    def status(self) -> Status:
        self.last_status = self.client.run(self.client.flows.status(self.id))
        return self.last_status

    def cancel(self) -> Status:
        """Cancel the job if it is still queued (`Conflict` if it is running or ended)."""
        self.last_status = self.client.run(self.client.flows.cancel(self.id))
        return self.last_status

    def _seen(self, status: Status) -> None:
        self.last_status = status

    def __repr__(self) -> str:
        return f"Job({self.id!r})"
