"""Rendering engines. Each engine module draws a `TextLayout` and encodes the result; each
`*_ops` module runs the image pipeline on an uploaded image."""

from __future__ import annotations

from collections.abc import Callable

from renderq.image_request import ImageRequest
from renderq.settings import Settings
from renderq.text_request import TextRequest
from worker.engines import imagemagick, imagemagick_ops, pillow, pillow_ops
from worker.layout import TextLayout

TextRenderer = Callable[[TextLayout, TextRequest], bytes]
ImageTransformer = Callable[[bytes, ImageRequest, Settings], bytes]

TEXT_RENDERERS: dict[str, TextRenderer] = {
    "pillow": pillow.render_text,
    "imagemagick": imagemagick.render_text,
}

IMAGE_TRANSFORMERS: dict[str, ImageTransformer] = {
    "pillow": pillow_ops.transform_image,
    "imagemagick": imagemagick_ops.transform_image,
}
