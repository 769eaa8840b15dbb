"""The Pillow engine's image pipeline: decode, turn upright, apply the ops, encode.

`worker.engines.imagemagick.image` runs the same steps through Wand; every size, position and
curve both use comes from `renderq.geometry` and `worker.engines.shared`.
"""

from __future__ import annotations

import io
from typing import Any, Final, assert_never

from PIL import Image, ImageCms, ImageFilter, UnidentifiedImageError

from renderq.colors import RGBA
from renderq.geometry import ResizePlan, Size, plan_resize, rotated_size
from renderq.image_request import ImageRequest
from renderq.operations import (
    Adjust,
    Blur,
    Crop,
    Flip,
    Grayscale,
    Operation,
    Resize,
    Rotate,
    Sharpen,
    Watermark,
)
from renderq.settings import Settings
from renderq.vocabulary import EXIF_ORIENTATION_TAG
from worker.engines.pillow.text import PIL_FORMATS, draw_text, encode
from worker.engines.shared import (
    PROFILE_FORMATS,
    QUALITY_FORMATS,
    TRANSPARENT,
    adjust_table,
    centred_offset,
    check_decoded_size,
    check_size,
    convert_to_srgb,
    invalid_image,
    is_rgb_profile,
    srgb_profile,
    watermark_layout,
    watermark_position,
)
from worker.engines.shrink_on_load import ShrinkOnLoad, plan_shrink_on_load

# What Pillow raises for bytes that are not a valid image of the stated format, including a
# truncated one, and for an embedded ICC profile that cannot convert the pixels. Its AVIF
# decoder raises RuntimeError for a stream libavif or dav1d cannot decode.
DECODE_ERRORS: Final = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    RuntimeError,
    ImageCms.PyCMSError,
)

_QUARTER_TURNS: Final = {
    1: Image.Transpose.ROTATE_270,  # Pillow turns counter-clockwise; ops turn clockwise
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_90,
}
# EXIF orientation 2..8 -> the transposition that makes the image upright.
_ORIENTATIONS: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FLIPS: Final = {
    "horizontal": Image.Transpose.FLIP_LEFT_RIGHT,
    "vertical": Image.Transpose.FLIP_TOP_BOTTOM,
}
# Where a resize scales by 6 or more, a box reduction first to 3x the size, then LANCZOS:
# Pillow's own measure for results indistinguishable from LANCZOS alone, for far less work.
_REDUCING_GAP: Final = 3.0
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def transform_image(data: bytes, request: ImageRequest, settings: Settings) -> bytes:
    """Decode `data`, apply `request.ops` in order and encode the result."""
    shrink = plan_shrink_on_load(request)
    image, icc, exif = _decode(data, request, shrink)
    for index, op in enumerate(request.ops):
        image = _apply(image, op, request.size_before(index), settings)
        check_size(image.size, request, index, op, shrink)
    return _encode(image, request, icc, exif)


def _decode(
    data: bytes, request: ImageRequest, shrink: ShrinkOnLoad | None
) -> tuple[Image.Image, bytes | None, bytes | None]:
    """The upright first frame in RGB(A), with the ICC profile and EXIF the output keeps;
    scaled down by the decoder where `shrink` allows and the format can (JPEG)."""
    try:
        source = Image.open(io.BytesIO(data), formats=[PIL_FORMATS[request.input_format]])
        if shrink is not None:
            source.draft(None, shrink.stored(request.orientation))
        source.load()
        icc: bytes | None = source.info.get("icc_profile") or None
        exif = _kept_exif(source) if request.keep_metadata else None
        image = _upright(source, request.orientation)
        if icc is not None and convert_to_srgb(icc, request.format):
            image, icc = _to_srgb(image, icc), None
        image = _normalise(image)
    except DECODE_ERRORS as exc:
        raise invalid_image(request) from exc
    check_decoded_size(image.size, request, shrink)
    # Nothing read from the file may reach the encoder by itself (Pillow writes a GIF
    # comment or a PNG profile from `info`): what is kept is passed explicitly.
    image.info = {}
    return image, icc, exif


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """Apply the orientation the header probe read, the one the sizes were planned with
    (not whatever EXIF Pillow itself finds, which may differ for other formats)."""
    turn = _ORIENTATIONS.get(orientation)
    return image if turn is None else image.transpose(turn)


def _kept_exif(image: Image.Image) -> bytes | None:
    """The input's EXIF with orientation 1, since the pixels are turned upright."""
    exif = image.getexif()
    if not exif:
        return None
    exif[EXIF_ORIENTATION_TAG] = 1
    return exif.tobytes()


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """The pixels converted through their embedded profile to sRGB.

    CMYK and gray pixels go through a CMYK or gray profile as they are; anything else is
    made RGB(A) first, which is what an RGB profile describes.
    """
    if is_rgb_profile(icc) or image.mode not in ("CMYK", "L"):
        image = _normalise(image)
    converted = ImageCms.profileToProfile(
        image,
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile())),
        outputMode="RGBA" if image.mode == "RGBA" else "RGB",
    )
    return image if converted is None else converted


def _normalise(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has any transparency, 8 bits per channel."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit gray: converting directly would clip every level over 255 to white.
        image = image.convert("I").point(lambda v: v / 257).convert("L")
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _encode(
    image: Image.Image, request: ImageRequest, icc: bytes | None, exif: bytes | None
) -> bytes:
    options: dict[str, Any] = {}
    if request.format in QUALITY_FORMATS:
        options["quality"] = request.quality
    if icc and request.format in PROFILE_FORMATS:
        options["icc_profile"] = icc
    if exif and request.format in PROFILE_FORMATS:
        options["exif"] = exif
    return encode(image, request.format, **options)


def _apply(image: Image.Image, op: Operation, planned: Size, settings: Settings) -> Image.Image:
    """`image` after `op`; `planned` is the size it was planned to have (it is smaller when
    shrunk on load, and a resize brings it to the planned size)."""
    match op:
        case Resize():
            image = _resize(image, plan_resize(planned, op))
        case Crop():
            image = image.crop((op.x, op.y, op.x + op.width, op.y + op.height))
        case Rotate():
            image = _rotate(image, op)
        case Flip():
            image = image.transpose(_FLIPS[op.direction])
        case Grayscale():
            image = _grayscale(image)
        case Blur():
            image = _blur(image, op)
        case Sharpen():
            image = _sharpen(image, op)
        case Adjust():
            image = _adjust(image, op)
        case Watermark():
            image = _watermark(image, op, settings)
        case _:  # exhaustive: an op added to `Operation` and not handled fails type-checking
            assert_never(op)
    return image


def _resize(image: Image.Image, plan: ResizePlan) -> Image.Image:
    if plan.scaled != image.size:
        image = image.resize(plan.scaled, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    return image if plan.crop is None else image.crop(plan.crop)


def _rotate(image: Image.Image, op: Rotate) -> Image.Image:
    turns = op.quarter_turns
    if turns is not None:
        return image.transpose(_QUARTER_TURNS[turns]) if turns else image
    if op.background[3] < 255 and image.mode == "RGB":
        image = image.convert("RGBA")  # the new corners are see-through
    fill = _fill(image.mode, op.background)
    turned = image.rotate(
        -op.degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill
    )
    return _centre_on(turned, rotated_size(image.size, op.degrees), fill)


def _fill(mode: str, color: RGBA) -> tuple[int, ...]:
    return color if mode == "RGBA" else color[:3]


def _centre_on(image: Image.Image, size: Size, fill: tuple[int, ...]) -> Image.Image:
    """`image` centred on a canvas of exactly `size`, cropped or padded with `fill`.

    Pillow's expanded canvas can be a pixel off the planned one; this makes it exact.
    """
    if image.size == size:
        return image
    canvas = Image.new(image.mode, size, fill)
    canvas.paste(image, centred_offset(image.size, size))
    return canvas


def _grayscale(image: Image.Image) -> Image.Image:
    # convert("L") weighs with Rec. 601 (GRAY_WEIGHTS) and ignores alpha, which is kept.
    gray = image.convert("L")
    alpha = [image.getchannel("A")] if image.mode == "RGBA" else []
    return Image.merge(image.mode, [gray, gray, gray, *alpha])


def _blur(image: Image.Image, op: Blur) -> Image.Image:
    """Blurred premultiplied, so the hidden colour of transparent pixels cannot bleed into
    the visible ones (ImageMagick weighs by alpha as well)."""
    blur = ImageFilter.GaussianBlur(op.radius)  # Pillow's radius is the standard deviation
    if image.mode != "RGBA":
        return image.filter(blur)
    return image.convert("RGBa").filter(blur).convert("RGBA")


def _sharpen(image: Image.Image, op: Sharpen) -> Image.Image:
    """Sharpens the colour only: alpha is the image's shape, and ImageMagick leaves it too."""
    mask = ImageFilter.UnsharpMask(op.radius, percent=150, threshold=0)
    if image.mode != "RGBA":
        return image.filter(mask)
    sharp = image.convert("RGB").filter(mask)
    sharp.putalpha(image.getchannel("A"))
    return sharp


def _adjust(image: Image.Image, op: Adjust) -> Image.Image:
    table = adjust_table(op)
    alpha = list(range(256)) if image.mode == "RGBA" else []  # alpha passes unchanged
    return image.point(table * 3 + alpha)


def _watermark(image: Image.Image, op: Watermark, settings: Settings) -> Image.Image:
    layer = draw_text(watermark_layout(op, settings), op.color, TRANSPARENT)
    # A full-size overlay lets paste clip a layer that overflows the image on any side.
    overlay = Image.new("RGBA", image.size, TRANSPARENT)
    overlay.paste(layer, watermark_position(image.size, layer.size, op.gravity, op.margin))
    marked = Image.alpha_composite(image.convert("RGBA"), overlay)
    return marked if image.mode == "RGBA" else marked.convert("RGB")
