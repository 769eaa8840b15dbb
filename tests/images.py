"""Checks on rendered images shared by the tests."""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageFilter


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


def look_difference(a: Image.Image, b: Image.Image, stroke: int) -> float:
    """How far apart two renderings of one text look, as a share of text against blank.

    Both are blurred to about the text's stroke width first, so antialiasing and hinting
    differences of a pixel fade while a wrong glyph, place or size still counts. 0 is the same
    look; 1 is as different as the text is from an empty canvas.
    """
    blur = ImageFilter.BoxBlur(max(1, stroke))
    left, right = (on_white(image).filter(blur) for image in (a, b))
    blank = Image.new("L", a.size, 255)
    return mean_difference(left, right) / max(mean_difference(left, blank), 1e-9)


def channel_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over the R, G and B channels on white, 0 to 255.

    Unlike `mean_difference` it sees a change of hue that keeps the gray level.
    """
    assert a.size == b.size
    left, right = (_rgb_on_white(image) for image in (a, b))
    # The histogram is the three channels' 256 bins one after the other.
    diff = ImageChops.difference(left, right).histogram()
    total = sum((index % 256) * count for index, count in enumerate(diff))
    return total / (3 * a.width * a.height)


def _rgb_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
