"""The jobs the benchmark runs: a short text, and a photo-sized JPEG made into a thumbnail.

Each is described once and used three ways: posted to the front, rendered in a process pool
with no queue, and rendered in-process or through a sandbox for the isolation cost.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image

from renderq.vocabulary import JobKind

TEXT: Final = "Hello, renderq!"
PHOTO_SIZE: Final = (1024, 768)
THUMBNAIL_OPS: Final = [{"op": "resize", "width": 256, "height": 256, "fit": "contain"}]


@dataclass(frozen=True)
class BenchJob:
    name: str  # as the rows show it: "pillow", "imagemagick image"
    kind: JobKind
    engine: str
    request: dict[str, Any]  # the fields as the front stores them

    @property
    def upload(self) -> bytes | None:
        return photo() if self.kind is JobKind.IMAGE else None

    def post_arguments(self) -> dict[str, Any]:
        """Keyword arguments for httpx's `post("/jobs", ...)`."""
        if self.kind is JobKind.TEXT:
            return {"json": self.request}
        params = {
            key: json.dumps(value) if key == "ops" else value for key, value in self.request.items()
        }
        return {"content": self.upload, "headers": {"content-type": "image/jpeg"}, "params": params}


def text_job(engine: str) -> BenchJob:
    """Pillow is the front's default engine: its request leaves `engine` out."""
    request = {"text": TEXT} if engine == "pillow" else {"text": TEXT, "engine": engine}
    return BenchJob(engine, JobKind.TEXT, engine, request)


def thumbnail_job(engine: str) -> BenchJob:
    request = {"ops": THUMBNAIL_OPS, "format": "jpeg", "quality": 85, "engine": engine}
    return BenchJob(f"{engine} image", JobKind.IMAGE, engine, request)


@functools.cache
def photo() -> bytes:
    """A JPEG with a photo's detail (noise over a gradient), so decoding costs what it does."""
    noise = Image.effect_noise(PHOTO_SIZE, 48).convert("RGB")
    gradient = Image.linear_gradient("L").resize(PHOTO_SIZE).convert("RGB")
    out = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(out, "JPEG", quality=90)
    return out.getvalue()
