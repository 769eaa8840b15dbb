"""The ImageMagick engine, through Wand."""

from worker.engines.imagemagick.image import transform_image
from worker.engines.imagemagick.text import render_text

__all__ = ["render_text", "transform_image"]
