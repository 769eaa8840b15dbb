"""The Pillow engine."""

from worker.engines.pillow.image import transform_image
from worker.engines.pillow.text import render_text

__all__ = ["render_text", "transform_image"]
