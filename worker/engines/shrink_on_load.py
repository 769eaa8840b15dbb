"""Shrink-on-load: decode at a reduced scale when the result never needs the full resolution.

A JPEG decoder can scale by M/8 while decoding (libjpeg's DCT scaling), for a fraction of the
cost of a full decode; thumbor and imgproxy owe most of their speed to it. It is allowed when
the first op that depends on the pixel grid is a resize: the ops before it (flips, quarter
turns, gray) give the same picture at any scale. The resize then scales from whatever the
decoder gave to the size planned from the full image, so the result has exactly the planned
dimensions and differs from a full decode only by resampling noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from renderq.geometry import Size, plan_resize
from renderq.image_request import ImageRequest
from renderq.operations import Flip, Grayscale, Resize, Rotate

# The scales a JPEG decoder may pick: M/8 for M in 1..8 (Pillow uses 1/8, 1/4, 1/2).
_EIGHTHS: Final = range(1, 9)
# The input formats whose decoder scales while decoding, in both engines.
SCALING_DECODERS: Final = frozenset({"jpeg"})


@dataclass(frozen=True)
class ShrinkOnLoad:
    """The decoder may hand over any scale of the image at least `at_least` (upright);
    op `resize_index` is the resize that brings it to the planned size."""

    at_least: Size
    resize_index: int

    def stored(self, orientation: int) -> Size:
        """`at_least` in the file's own orientation, before EXIF turns it upright."""
        width, height = self.at_least
        return (height, width) if orientation >= 5 else (width, height)


def plan_shrink_on_load(request: ImageRequest) -> ShrinkOnLoad | None:
    """How far the decoder may scale the image down, or None when it must decode it whole.

    Only a JPEG decoder scales while decoding; for any other format the decoded size must
    stay exactly the declared one (the check that refuses frames the header probe never saw).
    """
    if request.input_format not in SCALING_DECODERS:
        return None
    turned = False
    for index, op in enumerate(request.ops):
        if isinstance(op, Resize):
            before = request.size_before(index)
            width, height = plan_resize(before, op).scaled
            if width * 2 > before[0] or height * 2 > before[1]:
                return None  # less than halving: no decoder scale would fit
            return ShrinkOnLoad((height, width) if turned else (width, height), index)
        if isinstance(op, Rotate) and op.quarter_turns is not None:
            turned ^= op.quarter_turns % 2 == 1
        elif not isinstance(op, Flip | Grayscale):
            return None
    return None


def decoded_sizes(request: ImageRequest, shrink: ShrinkOnLoad | None) -> set[Size]:
    """The upright sizes the decoder may hand over: the declared size, or a scale of it by
    M/8 (rounded up, as libjpeg does) no smaller than `shrink.at_least`."""
    full = request.input_size
    if shrink is None:
        return {full}
    scaled = {(math.ceil(full[0] * m / 8), math.ceil(full[1] * m / 8)) for m in _EIGHTHS}
    low_w, low_h = shrink.at_least
    return {size for size in scaled if size[0] >= low_w and size[1] >= low_h}
