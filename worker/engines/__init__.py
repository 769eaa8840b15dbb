"""The rendering engines: each draws a laid-out text and runs the image pipeline, behind one
interface, so the renderer picks one by name and cannot call what an engine lacks.

Each engine is a package: `text` (drawing a `TextLayout`, encoding) and `image` (decode, turn
upright, the ops, encode). What both take their numbers from (placement, curves, colour) is
`shared`, so the engines differ only in their resampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from renderq.image_request import ImageRequest
from renderq.settings import Settings
from renderq.text_request import TextRequest
from renderq.vocabulary import Engine
from worker.engines import imagemagick, pillow
from worker.layout import TextLayout


class Renderer(Protocol):
    """What an engine does: draw a laid-out text, transform an uploaded image."""

    def render_text(self, layout: TextLayout, request: TextRequest) -> bytes: ...

    def transform_image(self, data: bytes, request: ImageRequest, settings: Settings) -> bytes: ...


RENDERERS: Final[Mapping[str, Renderer]] = {
    Engine.PILLOW: pillow,
    Engine.IMAGEMAGICK: imagemagick,
}
