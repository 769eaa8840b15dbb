"""Read an uploaded image's format and size from its own header bytes, without decoding it.

The HTTP front uses this to refuse what it cannot accept (an unknown format, a corrupt
header, too many pixels, an animation) before a job is queued. It never trusts a file name
or a Content-Type, never loads an image decoder, and reads only the few header bytes it
needs: a 20 MB upload costs a handful of lookups (a GIF costs a walk over its first frame,
an AVIF a walk over its boxes, in `renderq.avif_header`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from renderq.avif_header import AvifSequence, MalformedAvif, is_avif, read_avif
from renderq.errors import ErrorCode, InvalidRequest, UnsupportedMediaType
from renderq.vocabulary import EXIF_ORIENTATION_TAG, INPUT_FORMATS

_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
)

# Real files carry a few chunks or segments before the image data; a stream of thousands of
# tiny ones is hostile, and refusing it keeps the walk short.
_MAX_HEADER_BLOCKS: Final = 4096

_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM and RST0..7, and 0x00, a stuffed 0xFF00 that is only junk here.
_JPEG_NO_LENGTH: Final = frozenset({0x00, 0x01, *range(0xD0, 0xD8)})
_JPEG_FILL: Final = re.compile(rb"\xff+")

_BMP_INFO_SIZES: Final = frozenset({40, 52, 56, 64, 108, 124})
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
_EXIF: Final = b"Exif\x00\x00"
_TIFF_SHORT, _TIFF_LONG = 3, 4


@dataclass(frozen=True)
class ImageHeader:
    """What the header declares; `animated` means more than one frame or page."""

    format: str  # one of INPUT_FORMATS
    width: int
    height: int
    animated: bool
    # EXIF orientation of a JPEG, or an AVIF's irot and imir as one, 1 to 8; else 1 (upright).
    orientation: int = 1
    # An AVIF's alpha plane, which only one engine's decoder reads; not read for other formats.
    alpha_plane: bool = False

    @property
    def upright_size(self) -> tuple[int, int]:
        """The size once the EXIF orientation is applied: 5 to 8 turn the image a quarter."""
        if self.orientation >= 5:
            return self.height, self.width
        return self.width, self.height


def probe_image(data: bytes) -> ImageHeader:
    """The format, size and animation of `data`, from its header bytes only.

    Raises UnsupportedMediaType (unsupported_image_format) when no accepted format's magic
    bytes start the data, InvalidRequest (invalid_image) when the header is truncated,
    corrupt or declares an empty image, InvalidRequest (animated_image) for an AVIF image
    sequence, which has no single size to report. Nothing else escapes, whatever the bytes.
    """
    fmt = _sniff(data)
    if fmt is None:
        accepted = ", ".join(INPUT_FORMATS)
        raise UnsupportedMediaType(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"the upload is not an image in an accepted format ({accepted})",
        )
    try:
        header = _PROBES[fmt](data)
    except (IndexError, ValueError, OverflowError, struct.error) as exc:
        raise _invalid(fmt, "the header is truncated or corrupt") from exc
    if header.width <= 0 or header.height <= 0:
        raise _invalid(fmt, "the header declares a zero width or height")
    return header


def _sniff(data: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    # A WebP cut short inside its RIFF header is still a WebP (a truncated one), not a WAV.
    if data.startswith(b"RIFF") and b"WEBP".startswith(data[8:12]):
        return "webp"
    return "avif" if is_avif(data) else None


def _invalid(fmt: str, why: str) -> InvalidRequest:
    return InvalidRequest(ErrorCode.INVALID_IMAGE, f"invalid {fmt} image: {why}")


def _need(data: bytes, end: int, fmt: str) -> None:
    """Slices never fail when short, so a header read by slicing is bounds-checked first."""
    if end > len(data):
        raise _invalid(fmt, "the header is truncated")


def _probe_png(data: bytes) -> ImageHeader:
    length, kind, width, height = struct.unpack_from(">I4sII", data, 8)
    if kind != b"IHDR" or length != 13:
        raise _invalid("png", "IHDR is not the first chunk")
    _need(data, 33, "png")
    if max(width, height) > 0x7FFFFFFF:
        raise _invalid("png", "the size is beyond what PNG allows")
    return ImageHeader("png", width, height, _png_animated(data, 33))


def _png_animated(data: bytes, pos: int) -> bool:
    """An APNG announces itself with an acTL chunk, which must come before the first IDAT."""
    for _ in range(_MAX_HEADER_BLOCKS):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"acTL":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        pos += 12 + length
    raise _invalid("png", "too many chunks before the image data")


def _probe_jpeg(data: bytes) -> ImageHeader:
    """The size is in the first SOFn segment, after any APPn, DQT, DHT or COM segments."""
    pos = 2
    orientation = 1
    for _ in range(_MAX_HEADER_BLOCKS):
        marker, pos = _jpeg_next_marker(data, pos)
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return ImageHeader("jpeg", width, height, False, orientation)
        if marker == 0xE1 and data.startswith(_EXIF, pos + 2):
            (length,) = struct.unpack_from(">H", data, pos)
            orientation = _exif_orientation(data[pos + 2 + len(_EXIF) : pos + length])
        if marker in (0xD8, 0xD9, 0xDA):
            raise _invalid("jpeg", "the frame header is missing")
        if marker not in _JPEG_NO_LENGTH:
            (length,) = struct.unpack_from(">H", data, pos)
            if length < 2:
                raise _invalid("jpeg", "a segment length is too small")
            pos += length
    raise _invalid("jpeg", "too many segments before the frame header")


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag of IFD0 in an EXIF block; 1 when absent or unreadable, as decoders
    ignore a broken EXIF block rather than refuse the image."""
    try:
        order = "<" if tiff.startswith(b"II") else ">"
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        entries = struct.iter_unpack(order + "HHI2s2x", tiff[ifd + 2 : ifd + 2 + 12 * count])
        for tag, kind, values, value in entries:
            if tag == EXIF_ORIENTATION_TAG and kind == _TIFF_SHORT and values == 1:
                (orientation,) = struct.unpack(order + "H", value)
                return orientation if 1 <= orientation <= 8 else 1
    except struct.error:
        return 1
    return 1


def _jpeg_next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """The next marker code and the position after it.

    Like libjpeg and Pillow, skip junk before a marker and any 0xFF fill bytes, in C rather
    than byte by byte. `index` raises ValueError when no marker is left.
    """
    pos = data.index(b"\xff", pos)
    fill = _JPEG_FILL.match(data, pos)
    pos = fill.end() if fill else pos + 1
    return data[pos], pos + 1


def _probe_gif(data: bytes) -> ImageHeader:
    """The logical screen, grown to the first frame, is the size; frames are only counted,
    and only up to two."""
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + _gif_color_table_size(flags)
    # One step (a block or sub-block) per 64 bytes, plus slack for small files: encoders write
    # 255-byte sub-blocks, so only a stream of tiny blocks meant to slow the walk runs out.
    budget = len(data) // 64 + 1024
    frames = 0
    # Data ending at a block boundary counts as a trailer, as decoders accept it.
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:
            pos, steps = _gif_skip_sub_blocks(data, pos + 2, budget)
        elif data[pos] == 0x2C:
            frames += 1
            right, bottom = _gif_frame_extent(data, pos)
            if frames > 1:
                break
            # Decoders grow the canvas to hold the first frame: so must the size checked.
            width, height = max(width, right), max(height, bottom)
            pos, steps = _gif_skip_image(data, pos, budget)
        else:
            raise _invalid("gif", f"unknown block 0x{data[pos]:02x}")
        budget -= steps + 1
    if frames == 0:
        raise _invalid("gif", "it holds no image")
    return ImageHeader("gif", width, height, frames > 1)


def _gif_color_table_size(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _gif_frame_extent(data: bytes, pos: int) -> tuple[int, int]:
    """The right and bottom edges of the frame whose descriptor starts at `pos`."""
    left, top, width, height = struct.unpack_from("<HHHH", data, pos + 1)
    if left + width > 0xFFFF or top + height > 0xFFFF:
        raise _invalid("gif", "a frame lies beyond the largest GIF canvas")
    return left + width, top + height


def _gif_skip_image(data: bytes, pos: int, budget: int) -> tuple[int, int]:
    """Skip an image descriptor, its local color table, LZW code size and data sub-blocks."""
    pos += 10 + _gif_color_table_size(data[pos + 9])
    return _gif_skip_sub_blocks(data, pos + 1, budget)


def _gif_skip_sub_blocks(data: bytes, pos: int, budget: int) -> tuple[int, int]:
    """The position after a chain of sub-blocks, and how many steps that took."""
    for steps in range(1, budget + 1):
        size = data[pos]
        pos += size + 1
        if not size:
            return pos, steps
    raise _invalid("gif", "too many tiny blocks")


def _probe_webp(data: bytes) -> ImageHeader:
    """The first chunk tells the layout: simple lossy (VP8), lossless (VP8L) or extended."""
    riff_size, form, chunk, size = struct.unpack_from("<I4s4sI", data, 4)
    if form != b"WEBP":
        raise _invalid("webp", "the RIFF form is not WEBP")
    # libwebp refuses a file shorter than its RIFF size, and so does the worker's decoder.
    if 8 + riff_size > len(data) or 20 + size > 8 + riff_size:
        raise _invalid("webp", "the data is truncated")
    probe = _WEBP_CHUNKS.get(chunk)
    if probe is None:
        raise _invalid("webp", "the first chunk is not VP8, VP8L or VP8X")
    width, height, animated = probe(data, size)
    return ImageHeader("webp", width, height, animated)


def _webp_lossy(data: bytes, size: int) -> tuple[int, int, bool]:
    if size < 10 or data[23:26] != b"\x9d\x01\x2a":
        raise _invalid("webp", "the VP8 start code is missing")
    width, height = struct.unpack_from("<HH", data, 26)
    return width & 0x3FFF, height & 0x3FFF, False


def _webp_lossless(data: bytes, size: int) -> tuple[int, int, bool]:
    if size < 5 or data[20] != 0x2F:
        raise _invalid("webp", "the VP8L signature is missing")
    (bits,) = struct.unpack_from("<I", data, 21)
    if bits >> 29:
        raise _invalid("webp", "the VP8L version is unknown")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, False


def _webp_extended(data: bytes, size: int) -> tuple[int, int, bool]:
    if size < 10:
        raise _invalid("webp", "the VP8X chunk is too short")
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    return width, height, bool(data[20] & 0x02)


def _probe_bmp(data: bytes) -> ImageHeader:
    pixels, header_size = struct.unpack_from("<II", data, 10)
    if header_size == 12:
        width, height = struct.unpack_from("<HH", data, 18)
    elif header_size in _BMP_INFO_SIZES:
        width, height = struct.unpack_from("<ii", data, 18)
    else:
        raise _invalid("bmp", f"unknown info header size {header_size}")
    _need(data, 14 + header_size, "bmp")
    if pixels >= len(data):
        raise _invalid("bmp", "the pixel data starts past the end of the data")
    if width < 0:
        raise _invalid("bmp", "the width is negative")
    # A negative height only means the rows are stored top-down.
    return ImageHeader("bmp", width, abs(height), False)


def _probe_tiff(data: bytes) -> ImageHeader:
    """IFD0 describes the first page; a non-zero link to a next IFD means more pages."""
    order = "<" if data.startswith(b"II") else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd < 8:
        raise _invalid("tiff", "the first IFD overlaps the file header")
    (count,) = struct.unpack_from(order + "H", data, ifd)
    (next_ifd,) = struct.unpack_from(order + "I", data, ifd + 2 + 12 * count)
    if next_ifd and not 8 <= next_ifd <= len(data) - 2:
        raise _invalid("tiff", "the next IFD lies outside the data")
    width, height = _tiff_dimensions(data, order, ifd + 2, count)
    return ImageHeader("tiff", width, height, next_ifd != 0)


def _tiff_dimensions(data: bytes, order: str, pos: int, count: int) -> tuple[int, int]:
    """ImageWidth and ImageLength from the IFD entries (tag, type, count, value).

    Every entry is read, in C, because decoders keep the last of a repeated tag: a repeated
    or multi-valued size tag is refused rather than guessed at.
    """
    found: dict[int, int] = {}
    entries = struct.iter_unpack(order + "HHI4s", data[pos : pos + 12 * count])
    for tag, kind, values, value in entries:
        if tag not in (_TIFF_WIDTH, _TIFF_LENGTH):
            continue
        if tag in found or kind not in (_TIFF_SHORT, _TIFF_LONG) or values != 1:
            raise _invalid("tiff", f"tag {tag} is not a single SHORT or LONG value")
        # A SHORT sits in the first two bytes of the value field, whatever the byte order.
        (found[tag],) = struct.unpack_from(order + ("H" if kind == _TIFF_SHORT else "I"), value)
    if len(found) < 2:
        raise _invalid("tiff", "ImageWidth or ImageLength is missing")
    return found[_TIFF_WIDTH], found[_TIFF_LENGTH]


def _probe_avif(data: bytes) -> ImageHeader:
    try:
        facts = read_avif(data)
    except MalformedAvif as exc:
        raise _invalid("avif", str(exc)) from exc
    except AvifSequence as exc:
        raise InvalidRequest(
            ErrorCode.ANIMATED_IMAGE,
            "AVIF image sequences are not accepted; send a single frame",
            "file",
        ) from exc
    return ImageHeader("avif", facts.width, facts.height, False, facts.orientation, facts.alpha)


_PROBES: Final[dict[str, Callable[[bytes], ImageHeader]]] = {
    "png": _probe_png,
    "jpeg": _probe_jpeg,
    "gif": _probe_gif,
    "webp": _probe_webp,
    "bmp": _probe_bmp,
    "tiff": _probe_tiff,
    "avif": _probe_avif,
}

_WEBP_CHUNKS: Final[dict[bytes, Callable[[bytes, int], tuple[int, int, bool]]]] = {
    b"VP8 ": _webp_lossy,
    b"VP8L": _webp_lossless,
    b"VP8X": _webp_extended,
}
