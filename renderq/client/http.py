"""The HTTP library, and what every request of the client carries.

The client is built on httpx2, pydantic's maintained continuation of httpx: one library with
the same API for blocking and asyncio code (so `Client` and `AsyncClient` share everything
but the line that sends), timeouts per phase, and a multipart body that streams a file in
chunks instead of reading it whole. The project's tests already drive the API with it.
"""

from __future__ import annotations

from typing import Final

DEFAULT_URL: Final = "http://localhost:8000"
USER_AGENT: Final = "renderq-client/0.1"


def client_headers(api_key: str | None) -> dict[str, str]:
    """Headers of every request: who is asking, and the API key as a bearer token (for
    deployments that check one; others ignore it)."""
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
