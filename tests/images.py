"""Checks on rendered images shared by the tests."""

from __future__ import annotations

import io

from PIL import Image, ImageChops


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def on_white(image: Image.Image) -> Image.Image:
    """The image flattened onto white, in gray levels."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("L")


def dark_pixels(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> int:
    """How many pixels (inside `box`) are dark: where dark text was really drawn."""
    gray = on_white(image)
    if box is not None:
        gray = gray.crop(box)
    return sum(gray.histogram()[:96])


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of the two images' gray levels on white, 0 to 255."""
    assert a.size == b.size
    diff = ImageChops.difference(on_white(a), on_white(b)).histogram()
    return sum(level * count for level, count in enumerate(diff)) / (a.width * a.height)
