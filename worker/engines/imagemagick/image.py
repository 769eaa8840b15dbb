"""The ImageMagick engine's image pipeline, through Wand: decode, turn upright, apply the ops,
encode.

The same steps as `worker.engines.pillow.image`, with every size, position and curve taken from
`renderq.geometry` and `worker.engines.shared`. Wand images are plain `Any` to the type checker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from typing import Any, Final, assert_never

from wand.api import library
from wand.exceptions import CacheError, ResourceLimitError, WandException
from wand.image import IMAGE_TYPES, Image

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
from worker.engines.imagemagick.text import draw_text, encode, wand_color
from worker.engines.shared import (
    GRAY_WEIGHTS,
    PROFILE_FORMATS,
    QUALITY_FORMATS,
    TRANSPARENT,
    adjust_line,
    centred_offset,
    check_decoded_size,
    check_size,
    convert_to_srgb,
    invalid_image,
    srgb_profile,
    watermark_layout,
    watermark_position,
)
from worker.engines.shrink_on_load import ShrinkOnLoad, plan_shrink_on_load

# strip() also tells the PNG coder to leave out iCCP (through zTXt, which it is written
# under) and eXIf, the profiles kept on purpose; this is its list without those.
_PNG_EXCLUDED_CHUNKS: Final = "bKGD,caNv,cHRM,gAMA,iTXt,pHYs,sRGB,tEXt,date"
# Input formats whose decoder (libheif) applies the file's rotation and mirror itself, and
# starts threads unless it sees a single CPU.
_HEIF_FORMATS: Final = frozenset({"avif"})
_libc: Final = ctypes.CDLL(None, use_errno=True)


# Wand's `profiles[...] = ...` only attaches a profile (MagickSetImageProfile); converting the
# pixels from the embedded profile needs MagickProfileImage, which Wand does not wrap.
library.MagickProfileImage.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
]
library.MagickProfileImage.restype = ctypes.c_bool


def transform_image(data: bytes, request: ImageRequest, settings: Settings) -> bytes:
    """Decode `data`, apply `request.ops` in order and encode the result.

    Every ImageMagick error but a resource limit is the client's bytes failing to decode or
    carrying what ImageMagick refuses (a profile, a chunk): 422 `invalid_image`.
    """
    try:
        return _transform(data, request, settings)
    except (ResourceLimitError, CacheError):
        raise
    except (WandException, UnicodeDecodeError) as exc:
        raise invalid_image(request) from exc


def _transform(data: bytes, request: ImageRequest, settings: Settings) -> bytes:
    shrink = plan_shrink_on_load(request)
    image, icc, exif = _decode(data, request, shrink)
    try:
        for index, op in enumerate(request.ops):
            _apply(image, op, request.size_before(index), settings)
            check_size(image.size, request, index, op, shrink)
        with _eight_bit(image) as out:
            _attach_metadata(out, request.format, icc, exif)
            quality = request.quality if request.format in QUALITY_FORMATS else None
            return encode(out, request.format, quality)
    finally:
        image.close()


def _decode(
    data: bytes, request: ImageRequest, shrink: ShrinkOnLoad | None
) -> tuple[Any, bytes | None, bytes | None]:
    """The upright first frame in sRGB, with the ICC profile and EXIF the output keeps;
    scaled down by the decoder where `shrink` allows and the format can (JPEG)."""
    image = _read_first_frame(data, request, shrink)
    try:
        if not image.width or not image.height:  # a header with no image data after it
            raise invalid_image(request)
        prepared = _prepare(image, request)
    except BaseException:
        image.close()
        raise
    check_decoded_size(prepared[0].size, request, shrink)
    return prepared


def _read_first_frame(data: bytes, request: ImageRequest, shrink: ShrinkOnLoad | None) -> Any:
    """Read with the format stated (that decoder and no other) and the first frame only:
    "[0]" stops ImageMagick after it, so frames the header probe never saw are never
    decoded (the policy's list-length refuses a second one besides)."""
    image = Image()
    if shrink is not None:
        # The JPEG coder's hint: the smallest DCT scale that still covers this size.
        width, height = shrink.stored(request.orientation)
        library.MagickSetOption(image.wand, b"jpeg:size", f"{width}x{height}".encode())
    fmt = request.input_format.encode()
    library.MagickSetFormat(image.wand, fmt)
    library.MagickSetFilename(image.wand, b"buffer." + fmt + b"[0]")
    pinned = _on_one_cpu() if request.input_format in _HEIF_FORMATS else contextlib.nullcontext()
    with pinned:
        read = library.MagickReadImageBlob(image.wand, data, len(data))
    if not read:
        try:
            image.raise_exception()
        finally:
            image.close()
        raise invalid_image(request)  # ImageMagick failed without saying why
    return image


@contextlib.contextmanager
def _on_one_cpu() -> Iterator[None]:
    """Run on the CPU in hand only, for the length of a read.

    libheif's AV1 decoder (dav1d) starts a thread per CPU it may run on and fails when it
    cannot, as in a render child, whose RLIMIT_NPROC is 0; ImageMagick gives no way to ask
    it for one thread. A child runs one thread anyway, so this costs only migration.
    """
    allowed = os.sched_getaffinity(0)
    current = _libc.sched_getcpu()
    os.sched_setaffinity(0, {current if current in allowed else min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _prepare(image: Any, request: ImageRequest) -> tuple[Any, bytes | None, bytes | None]:
    if len(image.sequence) != 1:
        raise invalid_image(request)
    icc: bytes | None = image.profiles["icc"] or None
    exif: bytes | None = image.profiles["exif"] if request.keep_metadata else None
    _upright(image, 1 if request.input_format in _HEIF_FORMATS else request.orientation)
    if icc is not None and convert_to_srgb(icc, request.format):
        _to_srgb(image)
        icc = None
    return _normalise(image, request.input_format), icc, exif


def _upright(image: Any, orientation: int) -> None:
    """Apply the orientation the header probe read, the one the sizes were planned with."""
    turn = _ORIENTATIONS.get(orientation)
    if turn is not None:
        turn(image)
    image.orientation = "top_left"


# EXIF orientation 2..8 -> what makes the image upright (Wand rotates clockwise).
_ORIENTATIONS: Final[dict[int, Callable[[Any], None]]] = {
    2: lambda image: image.flop(),
    3: lambda image: image.rotate(180),
    4: lambda image: image.flip(),
    5: lambda image: image.transpose(),
    6: lambda image: image.rotate(90),
    7: lambda image: image.transverse(),
    8: lambda image: image.rotate(270),
}


def _to_srgb(image: Any) -> None:
    """The pixels converted through their embedded profile to sRGB, as LittleCMS does it."""
    profile = srgb_profile()
    if not library.MagickProfileImage(image.wand, b"icc", profile, len(profile)):
        image.raise_exception()


def _normalise(image: Any, input_format: str) -> Any:
    """sRGB with 8-bit values, on its full canvas, as Pillow sees the same file."""
    if input_format == "gif":
        _fill_page(image)
    if image.depth > 8:
        with image:
            image = _eight_bit(image)
    # Last, since reading the PAM back makes an all-gray image gray again.
    if image.colorspace != "srgb":
        image.transform_colorspace("srgb")
    return image


def _fill_page(image: Any) -> None:
    """A GIF frame smaller than its screen is placed on the whole screen, as Pillow does."""
    page_width, page_height, left, top = image.page
    if (page_width, page_height) not in ((0, 0), tuple(image.size)):
        image.background_color = wand_color(TRANSPARENT)
        image.extent(page_width, page_height, -left, -top)
    image.reset_coords()


def _eight_bit(image: Any) -> Any:
    """A copy with every value rounded to 8 bits, and nothing else from the file.

    ImageMagick 6's PNG coder truncates 16-bit values to 8 bits where Pillow rounds, a
    0.5-level bias on every pixel; its PAM coder rounds, so a trip through PAM gives the
    same values as Pillow. PAM carries no profile, property or comment: the copy is clean.
    """
    image.depth = 8
    return Image(blob=image.make_blob("pam"), format="pam")


def _attach_metadata(image: Any, fmt: str, icc: bytes | None, exif: bytes | None) -> None:
    """Only the ICC profile and (when kept) the EXIF go into the output."""
    image.strip()
    image.artifacts["png:exclude-chunk"] = _PNG_EXCLUDED_CHUNKS
    if fmt in PROFILE_FORMATS and icc:
        image.profiles["icc"] = icc  # no profile yet, so this attaches without converting
        _keep_rgb(image, fmt)
    if fmt in PROFILE_FORMATS and exif:
        image.profiles["exif"] = exif
        # The writer copies this into the EXIF orientation tag: the pixels are upright.
        image.orientation = "top_left"
    # Reading the PAM adds dates, attaching EXIF adds an `exif:*` copy of every tag; the
    # PNG coder would write each as a text chunk.
    for key in list(image.metadata):
        del image.metadata[key]


def _keep_rgb(image: Any, fmt: str) -> None:
    """Write three channels even when every pixel is gray.

    ImageMagick writes an all-gray image as a gray PNG or a one-channel JPEG, where the RGB
    profile kept is invalid: libpng drops it from the PNG, the JPEG pairs it with gray.
    """
    if fmt == "png":
        image.options["png:color-type"] = "6" if image.alpha_channel else "2"
    elif fmt == "jpeg":
        library.MagickSetType(image.wand, IMAGE_TYPES.index("truecolor"))


def _apply(image: Any, op: Operation, planned: Size, settings: Settings) -> None:
    """Apply `op`; `planned` is the size the image was planned to have (it is smaller when
    shrunk on load, and a resize brings it to the planned size)."""
    match op:
        case Resize():
            _resize(image, plan_resize(planned, op))
        case Crop():
            image.crop(op.x, op.y, width=op.width, height=op.height)
        case Rotate():
            _rotate(image, op)
        case Flip():
            _flip(image, op)
        case Grayscale():
            # Pillow's Rec. 601 weights; ImageMagick's own gray uses other weights.
            image.color_matrix([list(GRAY_WEIGHTS)] * 3)
        case Blur():
            # The separable blur: the same Gaussian, but its kernel is not cut short at large
            # sigmas as gaussian_blur's 2-D one is (4.5 levels off an exact blur at 50).
            image.blur(radius=0, sigma=op.radius)
        case Sharpen():
            image.unsharp_mask(radius=0, sigma=op.radius, amount=1.5, threshold=0)
        case Adjust():
            # Polynomial slope * v + intercept on 0..1 values, clamped; alpha untouched.
            image.function("polynomial", list(adjust_line(op)), channel="rgb")
        case Watermark():
            _watermark(image, op, settings)
        case _:  # exhaustive: an op added to `Operation` and not handled fails type-checking
            assert_never(op)


def _flip(image: Any, op: Flip) -> None:
    if op.direction == "horizontal":
        image.flop()  # ImageMagick's flop mirrors left-right, its flip top-bottom
    else:
        image.flip()


def _resize(image: Any, plan: ResizePlan) -> None:
    if plan.scaled != tuple(image.size):
        image.resize(*plan.scaled, filter="lanczos")
    if plan.crop is not None:
        image.crop(*plan.crop)


def _rotate(image: Any, op: Rotate) -> None:
    turns = op.quarter_turns
    if turns is not None:
        if turns:
            image.rotate(90 * turns)  # exact for multiples of 90
        return
    if op.background[3] < 255 and not image.alpha_channel:
        image.alpha_channel = "set"  # the new corners are see-through
    size = rotated_size(image.size, op.degrees)
    color = wand_color(op.background)
    image.rotate(op.degrees, background=color)
    _centre_on(image, size, color)


def _centre_on(image: Any, size: Size, color: Any) -> None:
    """Crop or pad `image` to exactly `size` around its centre, padding with `color`.

    ImageMagick's rotated canvas is larger than the planned one; this makes it exact.
    """
    if tuple(image.size) == size:
        return
    left, top = centred_offset(image.size, size)
    image.background_color = color
    image.compose = "copy"  # pixels replace the padding, as in Pillow, not blend over it
    image.extent(size[0], size[1], -left, -top)
    image.compose = "over"


def _watermark(image: Any, op: Watermark, settings: Settings) -> None:
    with draw_text(watermark_layout(op, settings), op.color, TRANSPARENT) as layer:
        left, top = watermark_position(image.size, layer.size, op.gravity, op.margin)
        # Composite clips a layer that overflows the image on any side.
        image.composite(layer, left=left, top=top, operator="over")
