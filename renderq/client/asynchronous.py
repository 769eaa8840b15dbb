"""The asyncio client: `AsyncClient` and the `AsyncJob` handles it returns.

The same flows as `Client` (`renderq.client.protocol`), run with httpx's async client and
`asyncio.sleep`; the same arguments, each method awaited.
"""

from __future__ import annotations

import asyncio
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


class AsyncClient:
    """`Client` for asyncio: many jobs in flight from one task group share its connections."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: Retry | None = None,
        max_wait: int = 30,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.flows = Flows(retry or Retry(), max_wait)
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=client_headers(api_key), transport=transport
        )

    async def submit_text(
        self, text: str, *, idempotency_key: str | None = None, **fields: Unpack[TextFields]
    ) -> AsyncJob:
        return await self._job(self.flows.submit_text(text, fields, idempotency_key))

    async def submit_image(
        self,
        source: ImageSource,
        ops: Sequence[OperationLike] = (),
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[ImageFields],
    ) -> AsyncJob:
        return await self._job(self.flows.submit_image(source, ops, fields, idempotency_key))

    async def render_text(
        self,
        text: str,
        *,
        timeout: float | None = 60.0,
        idempotency_key: str | None = None,
        **fields: Unpack[TextFields],
    ) -> Result:
        flows = self.flows
        return await self.run(
            flows.render(lambda s: flows.submit_text(text, fields, idempotency_key, s), timeout)
        )

    async def render_image(
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

        return await self.run(flows.render(submit, timeout))

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def fonts(self) -> list[str]:
        return list((await self.run(self.flows.fetch_json("/fonts")))["fonts"])

    async def queue_state(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.run(self.flows.fetch_json("/dashboard/state")))

    async def requeue_dead_letter(self, entry_id: str, admin_token: str) -> dict[str, Any]:
        return await self.run(self.flows.requeue_dead_letter(entry_id, admin_token))

    async def run(self, flow: Flow[T]) -> T:
        reply: Reply = None
        try:
            while True:
                reply = await self._perform(flow.send(reply))
        except StopIteration as end:
            return cast(T, end.value)
        finally:
            flow.close()

    async def _perform(self, step: Step) -> Reply:
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        try:
            return await self._http.request(step.method, step.path, **step.arguments(self.timeout))
        except httpx.TransportError as exc:
            return exc

    async def _job(self, flow: Flow[Submitted]) -> AsyncJob:
        status = await self.run(flow)
        assert isinstance(status, Status), "a submit without Prefer: wait answers 202"
        return AsyncJob(self, status.id, status)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncJob:
    """`Job` for asyncio."""

    def __init__(self, client: AsyncClient, job_id: str, status: Status | None = None) -> None:
        self.client = client
        self.id = job_id
        self.last_status = status

    async def wait(self, timeout: float | None = 60.0) -> Result:
        return await self.client.run(self.client.flows.wait(self.id, timeout, self._seen))

    async def status(self) -> Status:
        self.last_status = await self.client.run(self.client.flows.status(self.id))
        return self.last_status

    async def cancel(self) -> Status:
        self.last_status = await self.client.run(self.client.flows.cancel(self.id))
        return self.last_status

    def _seen(self, status: Status) -> None:
        self.last_status = status

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r})"
