"""renderq's Python client: submit jobs, wait for their images, without hand-writing the
POST, the polling loop, Retry-After and Idempotency-Key retries.

    from renderq.client import Client, Resize

    with Client("http://localhost:8000") as client:
        client.render_text("Hello", size=48).save("hello.png")
        client.render_image("photo.jpg", [Resize(256, 256, fit="cover")]).save("thumb.jpg")

`AsyncClient` is the same for asyncio. The op builders are the contract's own declarations
(`renderq.operations`), and fields are checked by the server's own rules before sending
(`renderq.client.rules`). The client imports neither Pillow, Wand nor redis (an
import-linter contract holds it): a web application installs it without the rendering stack.
Its HTTP library is httpx2 (see `renderq.client.http` for why).
"""

from renderq.client.asynchronous import AsyncClient, AsyncJob
from renderq.client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    RenderqError,
    ServerError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from renderq.client.results import Result, Status
from renderq.client.retry import Retry
from renderq.client.rules import ImageFields, TextFields, rgba
from renderq.client.sources import ImageSource
from renderq.client.sync import Client, Job
from renderq.errors import ErrorCode
from renderq.operations import (
    Adjust,
    Blur,
    Crop,
    Flip,
    Grayscale,
    Operation,
    Resize,
    Rotate,
    Sharpen,
    Watermark,
)

__all__ = [
    "Adjust",
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Blur",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Crop",
    "ErrorCode",
    "Flip",
    "Forbidden",
    "Grayscale",
    "ImageFields",
    "ImageSource",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobFailed",
    "NotFound",
    "Operation",
    "PayloadTooLarge",
    "RenderqError",
    "Resize",
    "Result",
    "Retry",
    "Rotate",
    "ServerError",
    "Sharpen",
    "Status",
    "TextFields",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WaitTimeout",
    "Watermark",
    "rgba",
]
