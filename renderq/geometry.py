"""The size of the image after each operation, worked out once for both engines.

The front uses it to refuse a crop outside the image or a result over the limits before
anything is queued; the engines use it so that both produce exactly the same dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from renderq.errors import ErrorCode, InvalidRequest
from renderq.operations import Crop, Operation, Resize, Rotate
from renderq.settings import Settings

Size = tuple[int, int]


@dataclass(frozen=True)
class ResizePlan:
    """Scale to `scaled`, then (for `cover`) crop the centred box `crop` of that."""

    scaled: Size
    crop: tuple[int, int, int, int] | None


def plan_resize(size: Size, op: Resize) -> ResizePlan:
    width, height = size
    if op.fit == "fill":
        return ResizePlan((op.width or width, op.height or height), None)
    scale_x = op.width / width if op.width else math.inf
    scale_y = op.height / height if op.height else math.inf
    if op.fit == "cover":
        scale = max(scale_x, scale_y)
        scaled = (
            max(op.width or 1, _scaled(width, scale)),
            max(op.height or 1, _scaled(height, scale)),
        )
        box_w, box_h = op.width or scaled[0], op.height or scaled[1]
        left, top = (scaled[0] - box_w) // 2, (scaled[1] - box_h) // 2
        return ResizePlan(scaled, (left, top, left + box_w, top + box_h))
    scale = min(scale_x, scale_y)
    if op.fit == "inside":
        scale = min(scale, 1.0)
    return ResizePlan((_scaled(width, scale), _scaled(height, scale)), None)


def rotated_size(size: Size, degrees: float) -> Size:
    """The canvas that holds the whole image turned by `degrees`."""
    width, height = size
    radians = math.radians(degrees)
    cos, sin = abs(math.cos(radians)), abs(math.sin(radians))
    # Round away float noise first, so 90-degree multiples come out exact.
    new_w = math.ceil(round(width * cos + height * sin, 6))
    new_h = math.ceil(round(width * sin + height * cos, 6))
    return max(1, new_w), max(1, new_h)


def size_after(size: Size, op: Operation) -> Size:
    if isinstance(op, Resize):
        plan = plan_resize(size, op)
        if plan.crop is None:
            return plan.scaled
        left, top, right, bottom = plan.crop
        return right - left, bottom - top
    if isinstance(op, Crop):
        return op.width, op.height
    if isinstance(op, Rotate):
        return rotated_size(size, op.degrees)
    return size


def plan_sizes(size: Size, ops: Sequence[Operation], settings: Settings) -> list[Size]:
    """The size after each op; refuses crops outside the image and results over the limits."""
    sizes = []
    for index, op in enumerate(ops):
        if isinstance(op, Crop):
            _check_crop(size, op, index)
        size = size_after(size, op)
        _check_limits(size, index, settings)
        sizes.append(size)
    return sizes


def _check_crop(size: Size, op: Crop, index: int) -> None:
    width, height = size
    if op.x + op.width > width or op.y + op.height > height:
        raise InvalidRequest(
            ErrorCode.OUT_OF_RANGE,
            f"crop {op.width}x{op.height}+{op.x}+{op.y} reaches outside the {width}x{height} image",
            f"ops[{index}].width" if op.x + op.width > width else f"ops[{index}].height",
        )


def _check_limits(size: Size, index: int, settings: Settings) -> None:
    """An image job's result obeys the same limits as its input."""
    width, height = size
    too_large = (
        width > settings.max_input_width
        or height > settings.max_input_height
        or width * height > settings.max_input_pixels
    )
    if too_large:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"op {index} makes the image {width}x{height}; the limits are "
            f"{settings.max_input_width}x{settings.max_input_height} and "
            f"{settings.max_input_pixels} pixels",
            f"ops[{index}]",
        )


def _scaled(length: int, scale: float) -> int:
    return max(1, round(length * scale))
