"""Engine-independent parts of the image pipeline: placement, curves, colour and size checks.

Both engines take every number that decides where a pixel goes or what value it gets from
here, so the only differences left between them are their resampling kernels.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Final

from PIL import ImageCms

from renderq.colors import NAMED_COLORS
from renderq.errors import ErrorCode, InvalidRequest, RenderFailed
from renderq.geometry import Size
from renderq.image_request import ImageRequest
from renderq.operations import Adjust, Operation, Watermark
from renderq.settings import Settings
from renderq.text_request import TextRequest
from worker.engines.shrink_on_load import ShrinkOnLoad, decoded_sizes
from worker.layout import TextLayout, layout_text

TRANSPARENT: Final = NAMED_COLORS["transparent"]

# Rec. 601 luma, the weights of Pillow's convert("L"): both engines make the same gray.
GRAY_WEIGHTS: Final = (0.299, 0.587, 0.114)

# Output formats that carry an ICC profile and EXIF; for GIF the pixels go to sRGB instead.
# (AVIF is written by Pillow only: see renderq.engine_formats.)
PROFILE_FORMATS: Final = frozenset({"png", "jpeg", "webp", "avif"})

# Output formats that take a quality; elsewhere ImageMagick reads it as something else
# (PNG: the zlib level and filter), so it is passed only to these.
QUALITY_FORMATS: Final = frozenset({"jpeg", "webp", "avif"})

_Q16_MAX: Final = 65535
_Q16_SCALE: Final = 1.0 / _Q16_MAX


def centred_offset(inner: Size, outer: Size) -> tuple[int, int]:
    """Where `inner` goes to sit centred in `outer`; negative when it overflows.

    Floor division, so that both engines break an odd difference the same way.
    """
    return (outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2


def watermark_position(image: Size, layer: Size, gravity: str, margin: int) -> tuple[int, int]:
    """Top-left corner of the watermark layer: `margin` px in from the edges `gravity` names."""
    west, east = gravity.endswith("west"), gravity.endswith("east")
    north, south = gravity.startswith("north"), gravity.startswith("south")
    return (
        _place(image[0], layer[0], margin, west, east),
        _place(image[1], layer[1], margin, north, south),
    )


def _place(space: int, length: int, margin: int, at_start: bool, at_end: bool) -> int:
    if at_start:
        return margin
    if at_end:
        return space - margin - length
    return (space - length) // 2


def watermark_layout(op: Watermark, settings: Settings) -> TextLayout:
    """The watermark laid out exactly as a text job would be, on a transparent canvas."""
    request = TextRequest(
        text=op.text, font=op.font, size=op.size, color=op.color, background=TRANSPARENT
    )
    return layout_text(request, settings)


def adjust_line(op: Adjust) -> tuple[float, float]:
    """(slope, intercept) of the adjust curve on 0..1 values, clamped by the caller."""
    slope = 1 + op.contrast / 100
    return slope, 0.5 - 0.5 * slope + op.brightness / 100


def adjust_table(op: Adjust) -> list[int]:
    """The adjust curve as a 256-entry lookup table for 8-bit channels.

    Worked out in the order ImageMagick's 16-bit build does it (on 16-bit values, rounded,
    then rounded to 8 bits), so the engines agree on every level: an exact half such as
    195.5 otherwise goes up in one engine and down in the other on float noise.
    """
    slope, intercept = adjust_line(op)
    return [_to_eight_bits(slope * _Q16_SCALE * (v * 257) + intercept) for v in range(256)]


def _to_eight_bits(level: float) -> int:
    """A 0..1 level as ImageMagick stores it in 16 bits, then as its coders write 8 bits."""
    q16 = min(_Q16_MAX, max(0, math.floor(level * _Q16_MAX + 0.5)))
    return (q16 + 128 - ((q16 + 128) >> 8)) >> 8


def convert_to_srgb(icc: bytes, fmt: str) -> bool:
    """Whether the pixels must be converted to sRGB rather than keep their profile.

    They must when the output cannot carry a profile (GIF), and when the profile is not an
    RGB one (CMYK, gray): the pipeline works in RGB, where such a profile would be wrong.
    """
    return fmt not in PROFILE_FORMATS or not is_rgb_profile(icc)


def is_rgb_profile(icc: bytes) -> bool:
    """The ICC header's data colour space, at bytes 16 to 20, is RGB."""
    return icc[16:20] == b"RGB "


@lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """A standard sRGB ICC profile, built by LittleCMS, for converting in either engine."""
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


def check_size(
    actual: Size, request: ImageRequest, index: int, op: Operation, shrink: ShrinkOnLoad | None
) -> None:
    """Both engines must produce the planned size: a mismatch is a bug here, not bad input.
    On an image shrunk on load, the ops before its resize keep the shrunk scale."""
    if shrink is not None and index < shrink.resize_index:
        return
    sizes = request.sizes
    planned = sizes[index] if index < len(sizes) else None
    if planned is None or tuple(actual) != tuple(planned):
        raise RenderFailed(
            ErrorCode.RENDER_FAILED,
            f"op {index} ({op.op}) made a {actual[0]}x{actual[1]} image, planned {planned}",
        )


def invalid_image(request: ImageRequest) -> InvalidRequest:
    """The error for bytes the decoder refused, or decoded other than the header declared."""
    return InvalidRequest(
        ErrorCode.INVALID_IMAGE, f"the upload is not a valid {request.input_format} image", "file"
    )


def check_decoded_size(
    actual: Size, request: ImageRequest, shrink: ShrinkOnLoad | None = None
) -> None:
    """The decoder must find the image the header probe declared (or a scale of it, when
    shrinking on load): a decoder that reads a frame the probe never saw (a hidden GIF
    frame, a chain of BMPs) is refused, so the size and animation rules checked on the
    header hold for what is rendered."""
    if (actual[0], actual[1]) not in decoded_sizes(request, shrink):
        raise invalid_image(request)
