"""What comparing two rendered images finds: each one's format and size, and how far apart
their pixels are.

A sandbox child decodes and compares (`worker.render.compare_images`): the worker process
never decodes an image, and a result holds a client's pixels as much as the upload did. The
child's answer crosses the wire as JSON and is read back here, checked like anything else a
child sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from renderq.vocabulary import OUTPUT_FORMATS


class MalformedComparison(ValueError):
    """A child's comparison is not what a comparison looks like."""


@dataclass(frozen=True)
class ImageInfo:
    """One image as its decoder saw it."""

    format: str  # one of OUTPUT_FORMATS
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def to_wire(self) -> dict[str, Any]:
        return {"format": self.format, "width": self.width, "height": self.height}

    @classmethod
    def from_wire(cls, data: Any) -> ImageInfo | None:
        if data is None:
            return None
        if not isinstance(data, dict) or data.get("format") not in OUTPUT_FORMATS:
            raise MalformedComparison(f"not an image's format and size: {data!r:.200}")
        return cls(str(data["format"]), _count(data.get("width")), _count(data.get("height")))


@dataclass(frozen=True)
class PixelComparison:
    """Two images (either may be missing), and their difference when both have one size:
    the mean and the largest absolute difference over every pixel's R, G, B and A, 0 to 255."""

    first: ImageInfo | None
    second: ImageInfo | None
    diff_mean: float | None = None
    diff_max: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "first": self.first.to_wire() if self.first else None,
            "second": self.second.to_wire() if self.second else None,
            "diff_mean": self.diff_mean,
            "diff_max": self.diff_max,
        }

    @classmethod
    def from_wire(cls, data: Any) -> PixelComparison:
        """Raises MalformedComparison for anything but a comparison's JSON."""
        if not isinstance(data, dict):
            raise MalformedComparison("a comparison is not an object")
        first = ImageInfo.from_wire(data.get("first"))
        second = ImageInfo.from_wire(data.get("second"))
        mean, largest = data.get("diff_mean"), data.get("diff_max")
        if (mean is None) != (largest is None):
            raise MalformedComparison("a difference needs both its mean and its maximum")
        if mean is None:
            return cls(first, second)
        if not isinstance(mean, int | float) or not 0 <= mean <= 255:
            raise MalformedComparison(f"mean difference out of range: {mean!r:.50}")
        largest = _count(largest)
        if largest > 255 or first is None or second is None or first.size != second.size:
            raise MalformedComparison("a pixel difference of images that cannot have one")
        return cls(first, second, float(mean), largest)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedComparison(f"not a whole number: {value!r:.50}")
    return value
