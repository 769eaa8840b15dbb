"""The header probe: real images made by Pillow, hand-built edge cases and hostile bytes."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from PIL import Image, ImageDraw

from renderq.errors import ErrorCode, InvalidRequest, UnsupportedMediaType
from renderq.image_header import ImageHeader, probe_image
from renderq.vocabulary import INPUT_FORMATS, INPUT_MEDIA_TYPES


def picture(size: tuple[int, int], mode: str = "RGB", shade: int = 0) -> Image.Image:
    """A small image with some content; `shade` makes frames of an animation differ."""
    image = Image.new("RGB", size, (shade * 60 % 256, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((1, 1, size[0] // 2, size[1] // 2), fill=(255, 255 - shade * 40 % 256, 0))
    draw.line((0, size[1] - 1, size[0] - 1, 0), fill=(0, 0, 0), width=2)
    return image.convert(mode)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animation(size: tuple[int, int], fmt: str, frames: int = 3, **options: Any) -> bytes:
    first, *rest = (picture(size, shade=shade) for shade in range(frames))
    return encode(first, fmt, save_all=True, append_images=rest, **options)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer rotates; the stored size stays 60 x 30.
    return encode(picture((60, 30)), "JPEG", exif=exif)


def translucent(size: tuple[int, int]) -> Image.Image:
    """A picture with see-through pixels: AVIF encoders drop an alpha plane all opaque."""
    image = picture(size, "RGBA")
    image.putalpha(128)
    return image


def exif_rotated_avif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # written as irot: the stored size stays 60 x 30, shown 30 x 60
    return encode(picture((60, 30)), "AVIF", exif=exif)


def top_down_bmp() -> bytes:
    data = bytearray(encode(picture((23, 17)), "BMP"))
    struct.pack_into("<i", data, 22, -17)
    return bytes(data)


def core_bmp() -> bytes:
    """An OS/2-style BMP: the 12-byte BITMAPCOREHEADER, a 4-color palette, 5 x 3 pixels."""
    palette = bytes([0, 0, 0, 0, 0, 255, 0, 255, 0, 255, 0, 0])
    rows = bytes([0, 1, 2, 3, 1, 0, 0, 0]) * 3
    info = struct.pack("<IHHHH", 12, 5, 3, 1, 8)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


# name -> (bytes, the header the probe must report). Pillow must agree with every one.
SAMPLE_BUILDERS: dict[str, tuple[Callable[[], bytes], ImageHeader]] = {
    "png_rgb": (lambda: encode(picture((37, 23)), "PNG"), ImageHeader("png", 37, 23, False)),
    "png_rgba": (
        lambda: encode(picture((41, 29), "RGBA"), "PNG"),
        ImageHeader("png", 41, 29, False),
    ),
    "png_palette": (
        lambda: encode(picture((17, 53), "P"), "PNG"),
        ImageHeader("png", 17, 53, False),
    ),
    "apng": (lambda: animation((30, 20), "PNG"), ImageHeader("png", 30, 20, True)),
    "jpeg_baseline": (
        lambda: encode(picture((64, 40)), "JPEG"),
        ImageHeader("jpeg", 64, 40, False),
    ),
    "jpeg_progressive": (
        lambda: encode(picture((48, 80)), "JPEG", progressive=True),
        ImageHeader("jpeg", 48, 80, False),
    ),
    "jpeg_exif_rotated": (exif_rotated_jpeg, ImageHeader("jpeg", 60, 30, False, orientation=6)),
    "gif": (lambda: encode(picture((33, 21)), "GIF"), ImageHeader("gif", 33, 21, False)),
    "gif_noise": (
        lambda: encode(Image.effect_noise((300, 200), 80), "GIF"),
        ImageHeader("gif", 300, 200, False),
    ),
    "gif_animated": (lambda: animation((25, 35), "GIF"), ImageHeader("gif", 25, 35, True)),
    "webp_lossy": (
        lambda: encode(picture((50, 30)), "WEBP", quality=80),
        ImageHeader("webp", 50, 30, False),
    ),
    "webp_lossy_alpha": (
        lambda: encode(picture((44, 28), "RGBA"), "WEBP", quality=80),
        ImageHeader("webp", 44, 28, False),
    ),
    "webp_lossless": (
        lambda: encode(picture((31, 19)), "WEBP", lossless=True),
        ImageHeader("webp", 31, 19, False),
    ),
    "webp_animated": (lambda: animation((40, 24), "WEBP"), ImageHeader("webp", 40, 24, True)),
    "bmp": (lambda: encode(picture((23, 17)), "BMP"), ImageHeader("bmp", 23, 17, False)),
    "bmp_top_down": (top_down_bmp, ImageHeader("bmp", 23, 17, False)),
    "bmp_core": (core_bmp, ImageHeader("bmp", 5, 3, False)),
    "tiff_little_endian": (
        lambda: encode(picture((29, 13)), "TIFF"),
        ImageHeader("tiff", 29, 13, False),
    ),
    "tiff_big_endian": (
        lambda: encode(Image.new("I;16B", (11, 7)), "TIFF"),
        ImageHeader("tiff", 11, 7, False),
    ),
    "tiff_multi_page": (lambda: animation((20, 10), "TIFF"), ImageHeader("tiff", 20, 10, True)),
    "avif": (lambda: encode(picture((45, 27)), "AVIF"), ImageHeader("avif", 45, 27, False)),
    "avif_alpha": (
        lambda: encode(translucent((26, 38)), "AVIF"),
        ImageHeader("avif", 26, 38, False, alpha_plane=True),
    ),
    "avif_exif_rotated": (exif_rotated_avif, ImageHeader("avif", 60, 30, False, orientation=6)),
}
SAMPLES = sorted(SAMPLE_BUILDERS)


@cache
def sample(name: str) -> bytes:
    return SAMPLE_BUILDERS[name][0]()


def refusal(data: bytes) -> UnsupportedMediaType | InvalidRequest:
    with pytest.raises((UnsupportedMediaType, InvalidRequest)) as caught:
        probe_image(data)
    assert isinstance(caught.value, UnsupportedMediaType | InvalidRequest)
    return caught.value


def assert_invalid(data: bytes) -> None:
    error = refusal(data)
    assert (error.status, error.code) == (422, ErrorCode.INVALID_IMAGE), error.message


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, before_data: bytes = b"") -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    body = png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00")) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + ihdr + before_data + body


GIF_FRAME = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"


def gif(frames: int, frame: bytes = GIF_FRAME, tail: bytes = b"\x3b") -> bytes:
    """A GIF89a with a 2-color global table and `frames` copies of `frame`."""
    header = b"GIF89a" + struct.pack("<HHBBB", 10, 8, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + frame * frames + tail


def tiff_big_endian(tags: list[tuple[int, int, int]], ifd: int = 8, next_ifd: int = 0) -> bytes:
    """A hand-built MM TIFF: IFD0 at `ifd` with (tag, type, value) entries, then padding."""
    entries = b"".join(
        struct.pack(">HHI", tag, kind, 1)
        + (struct.pack(">HH", value, 0) if kind == 3 else struct.pack(">I", value))
        for tag, kind, value in tags
    )
    body = struct.pack(">H", len(tags)) + entries + struct.pack(">I", next_ifd)
    return b"MM\x00*" + struct.pack(">I", ifd) + body + b"\x00" * 64


@pytest.mark.parametrize("name", SAMPLES)
def test_probe_reports_format_size_and_animation(name: str) -> None:
    expected = SAMPLE_BUILDERS[name][1]
    assert probe_image(sample(name)) == expected


@pytest.mark.parametrize("name", SAMPLES)
def test_pillow_agrees_with_the_probe(name: str) -> None:
    expected = SAMPLE_BUILDERS[name][1]
    with Image.open(io.BytesIO(sample(name))) as image:
        assert image.format is not None
        assert image.format.lower() == expected.format
        assert image.size == (expected.width, expected.height)
        assert (getattr(image, "n_frames", 1) > 1) == expected.animated


def test_formats_and_media_types() -> None:
    assert INPUT_FORMATS == ("png", "jpeg", "gif", "webp", "bmp", "tiff", "avif")
    assert set(INPUT_MEDIA_TYPES) == set(INPUT_FORMATS)
    assert all(INPUT_MEDIA_TYPES[fmt] == f"image/{fmt}" for fmt in INPUT_FORMATS)


def test_probing_loads_no_image_decoder() -> None:
    code = "import sys, renderq.image_header; assert not {'PIL', 'wand'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(random.Random(7).getrandbits(8) for _ in range(512)),
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>',
        b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b"push graphic-context\nviewbox 0 0 640 480\n",
        b"just some text",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"II+\x00\x08\x00\x10\x00",
    ],
)
def test_unknown_magic_is_an_unsupported_format(data: bytes) -> None:
    error = refusal(data)
    assert (error.status, error.code) == (415, ErrorCode.UNSUPPORTED_IMAGE_FORMAT)
    assert all(fmt in error.message for fmt in INPUT_FORMATS)


@pytest.mark.parametrize("length", [10, 20, 30])
@pytest.mark.parametrize("name", SAMPLES)
def test_truncated_header_is_invalid(name: str, length: int) -> None:
    assert_invalid(sample(name)[:length])


@pytest.mark.parametrize("name", SAMPLES)
def test_hostile_bytes_give_a_header_or_a_refusal(name: str) -> None:
    data = sample(name)
    rng = random.Random(name)
    variants = [data[:length] for length in range(65)]
    for _ in range(400):
        mutated = bytearray(data)
        span = 64 if rng.random() < 0.7 else len(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(min(span, len(data)))] = rng.getrandbits(8)
        variants.append(bytes(mutated))
    for variant in variants:
        try:
            header = probe_image(variant)
        except UnsupportedMediaType as exc:
            assert exc.code == ErrorCode.UNSUPPORTED_IMAGE_FORMAT
        except InvalidRequest as exc:
            # A brand turned into avis makes an AVIF an image sequence.
            sequence = name.startswith("avif") and exc.code == ErrorCode.ANIMATED_IMAGE
            assert exc.code == ErrorCode.INVALID_IMAGE or sequence
        else:
            assert header.format in INPUT_FORMATS
            assert header.width > 0
            assert header.height > 0


def test_huge_png_dimensions_are_reported_not_judged() -> None:
    assert probe_image(png(100_000, 100_000)) == ImageHeader("png", 100_000, 100_000, False)


def test_png_refusals() -> None:
    assert_invalid(png(0, 10))
    assert_invalid(png(2**31, 10))
    not_first = png(3, 3)[:8] + png_chunk(b"tEXt", b"a\x00b") + png(3, 3)[8:]
    assert_invalid(not_first)
    assert_invalid(png(3, 3, before_data=png_chunk(b"tEXt", b"") * 5000))


def test_apng_is_animated_only_when_actl_precedes_the_image_data() -> None:
    actl = png_chunk(b"acTL", struct.pack(">II", 2, 0))
    assert probe_image(png(4, 4, before_data=actl)).animated
    assert not probe_image(png(4, 4)[:-12] + actl + png_chunk(b"IEND", b"")).animated


def test_gif_with_thousands_of_frames_is_animated() -> None:
    assert probe_image(gif(5000)) == ImageHeader("gif", 10, 8, True)


def test_gif_walk_stops_at_the_second_frame() -> None:
    # Whatever follows the second image descriptor is never read.
    assert probe_image(gif(2, tail=b"\xfe" * 100_000)).animated


def test_gif_without_trailer_is_accepted_and_gif_without_image_is_not() -> None:
    assert probe_image(gif(1, tail=b"")) == ImageHeader("gif", 10, 8, False)
    assert_invalid(gif(0))
    assert_invalid(gif(1, tail=b"\x99"))
    assert_invalid(gif(1)[:-3])


def test_gif_frame_beyond_the_largest_canvas_is_invalid() -> None:
    frame = b"\x2c" + struct.pack("<HHHHB", 65000, 0, 1000, 1, 0) + b"\x02\x02\x44\x01\x00"
    assert_invalid(gif(1, frame=frame))
    assert_invalid(gif(1, tail=frame + b"\x3b"))


def test_gif_of_tiny_sub_blocks_is_refused() -> None:
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02" + b"\x01\x00" * 500_000
    assert_invalid(gif(1, frame=frame + b"\x00"))


def test_jpeg_without_frame_header_is_invalid() -> None:
    comment = b"\xff\xfe\x00\x06hello"
    assert_invalid(b"\xff\xd8" + comment + b"\xff\xd9")
    assert_invalid(b"\xff\xd8" + comment + b"\xff\xda\x00\x02" + b"\x00" * 64)
    assert_invalid(b"\xff\xd8" + comment * 5000 + b"\xff\xd9")
    assert_invalid(b"\xff\xd8" + b"\xff" * 1_000_000)


def test_jpeg_marker_walk_skips_fill_standalone_markers_and_junk() -> None:
    data = sample("jpeg_baseline")
    padded = data[:2] + b"\xff\xff\xd0\xff\x01junk\xff\x00" + b"\xff" * 10 + data[2:]
    assert probe_image(padded) == ImageHeader("jpeg", 64, 40, False)


def test_webp_refusals() -> None:
    data = sample("webp_lossless")
    assert_invalid(data[:12] + b"ALPH" + data[16:])
    assert_invalid(data[:-1])
    assert_invalid(data[:20] + b"\x00" + data[21:])


def test_bmp_refusals() -> None:
    data = bytearray(sample("bmp"))
    struct.pack_into("<i", data, 18, -23)
    assert_invalid(bytes(data))
    struct.pack_into("<I", data, 14, 20)
    assert_invalid(bytes(data))


def test_hand_built_big_endian_tiff_with_long_values() -> None:
    data = tiff_big_endian([(256, 4, 300), (257, 4, 70_000)])
    assert probe_image(data) == ImageHeader("tiff", 300, 70_000, False)
    short = tiff_big_endian([(256, 3, 300), (257, 3, 200)], next_ifd=20)
    assert probe_image(short) == ImageHeader("tiff", 300, 200, True)


def test_tiff_refusals() -> None:
    assert_invalid(tiff_big_endian([(256, 4, 300)]))
    assert_invalid(tiff_big_endian([(256, 4, 300), (257, 4, 0)]))
    assert_invalid(tiff_big_endian([(256, 2, 300), (257, 4, 10)]))
    assert_invalid(tiff_big_endian([(256, 4, 300), (256, 4, 20), (257, 4, 10)]))
    two_values = bytearray(tiff_big_endian([(256, 4, 300), (257, 4, 10)]))
    two_values[17] = 2  # the count of ImageWidth: its value field is then an offset
    assert_invalid(bytes(two_values))
    assert_invalid(tiff_big_endian([(256, 4, 300), (257, 4, 10)], next_ifd=10**6))
    assert_invalid(b"MM\x00*" + struct.pack(">I", 10**6) + b"\x00" * 64)
    assert_invalid(b"MM\x00*" + struct.pack(">I", 4) + b"\x00" * 64)


@pytest.mark.parametrize(
    ("orientation", "upright"), [(1, (320, 200)), (3, (320, 200)), (6, (200, 320)), (8, (200, 320))]
)
def test_jpeg_exif_orientation_is_read(orientation: int, upright: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    header = probe_image(encode(picture((320, 200)), "JPEG", exif=exif))
    assert (header.width, header.height) == (320, 200)
    assert header.orientation == orientation
    assert header.upright_size == upright


def test_broken_exif_is_read_as_upright() -> None:
    jpeg = encode(picture((32, 20)), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", 12) + b"Exif\x00\x00MM\x00"
    header = probe_image(jpeg[:2] + app1 + jpeg[2:])
    assert (header.width, header.height, header.orientation) == (32, 20, 1)


def test_gif_size_grows_to_its_first_frame_as_decoders_do() -> None:
    # A 1x1 screen holding a 3000x2000 frame decodes as 3000x2000: the limits must see that.
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, 3000, 2000, 0) + b"\x02\x01\x00\x00"
    data = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0) + descriptor + b"\x3b"
    header = probe_image(data)
    assert (header.width, header.height, header.animated) == (3000, 2000, False)
