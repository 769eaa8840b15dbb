"""Both engines run the image pipeline to the planned sizes with nearly the same pixels.

Every input is drawn here with Pillow: a picture with smooth gradients and sharp shapes
(saved as a phone-style JPEG turned by EXIF, and as a PNG with transparent areas) and a
palette GIF with a transparent index.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from functools import cache
from typing import Any

import pytest
from PIL import Image, ImageCms, ImageDraw, PngImagePlugin

from renderq.errors import ErrorCode, InvalidRequest, RenderFailed
from renderq.geometry import Size, plan_sizes
from renderq.image_header import probe_image
from renderq.image_request import ImageRequest
from renderq.operations import parse_operations
from renderq.settings import Settings
from tests.images import channel_difference, decode
from worker.engines import RENDERERS
from worker.engines.shared import watermark_position

SETTINGS = Settings.from_env({})
ENGINES = sorted(RENDERERS)

PICTURE_SIZE = (320, 200)
UPRIGHT_SIZE = (200, 320)  # the JPEG's size once its EXIF orientation 6 is applied
RED, BLUE = (255, 0, 0), (0, 0, 255)
GPS_LATITUDE = (48.0, 51.0, 30.0)

# Tolerances on the engines' mean difference (0..255 per channel, on white, see
# `channel_difference`), each about twice the largest value measured over the alpha PNG and
# the EXIF JPEG (ranges in the comments). Decoding, turning upright and re-encoding alone
# measure 0.00 for PNG and JPEG (the same libjpeg IDCT in both). What differs is each
# engine's resampling kernel, felt at sharp edges.
LOSSLESS_TOLERANCE = 0.5  # crop, flip, quarter turns: 0.00
RESIZE_TOLERANCE = 0.75  # Lanczos-3 in both, different kernel tables: 0.16 to 0.36
# Pillow's bicubic against ImageMagick's shear rotation, at the edges only: 0.39 to 0.59
# (a half-degree turn, almost all edge, measures 1.27).
ROTATE_TOLERANCE = 1.5
GRAYSCALE_TOLERANCE = 0.5  # the same Rec. 601 weights: 0.00
BLUR_TOLERANCE = 1.0  # Pillow's three box passes against a true Gaussian: 0.19 to 0.58
SHARPEN_TOLERANCE = 0.75  # unsharp mask over either blur: 0.18 to 0.36
ADJUST_TOLERANCE = 0.1  # one lookup table computed as ImageMagick computes: 0.00
WATERMARK_TOLERANCE = 0.75  # the text's antialiasing and hinting: 0.03 to 0.33

OP_CASES: list[tuple[str, list[dict[str, Any]], float]] = [
    ("resize-contain", [{"op": "resize", "width": 160, "height": 160}], RESIZE_TOLERANCE),
    (
        "resize-cover",
        [{"op": "resize", "width": 150, "height": 90, "fit": "cover"}],
        RESIZE_TOLERANCE,
    ),
    (
        "resize-fill",
        [{"op": "resize", "width": 101, "height": 77, "fit": "fill"}],
        RESIZE_TOLERANCE,
    ),
    (
        "resize-inside",
        [{"op": "resize", "width": 900, "height": 120, "fit": "inside"}],
        RESIZE_TOLERANCE,
    ),
    ("resize-width-only", [{"op": "resize", "width": 130}], RESIZE_TOLERANCE),
    ("resize-height-only-enlarges", [{"op": "resize", "height": 450}], RESIZE_TOLERANCE),
    ("crop", [{"op": "crop", "x": 15, "y": 25, "width": 120, "height": 90}], LOSSLESS_TOLERANCE),
    ("rotate-90", [{"op": "rotate", "degrees": 90}], LOSSLESS_TOLERANCE),
    ("rotate-180", [{"op": "rotate", "degrees": 180}], LOSSLESS_TOLERANCE),
    ("rotate-270", [{"op": "rotate", "degrees": 270}], LOSSLESS_TOLERANCE),
    ("rotate-minus-90", [{"op": "rotate", "degrees": -90}], LOSSLESS_TOLERANCE),
    ("rotate-30", [{"op": "rotate", "degrees": 30, "background": "#336699"}], ROTATE_TOLERANCE),
    ("rotate-minus-50-clear", [{"op": "rotate", "degrees": -50}], ROTATE_TOLERANCE),
    ("flip-horizontal", [{"op": "flip", "direction": "horizontal"}], LOSSLESS_TOLERANCE),
    ("flip-vertical", [{"op": "flip", "direction": "vertical"}], LOSSLESS_TOLERANCE),
    ("grayscale", [{"op": "grayscale"}], GRAYSCALE_TOLERANCE),
    ("blur", [{"op": "blur", "radius": 3}], BLUR_TOLERANCE),
    ("blur-small", [{"op": "blur", "radius": 0.6}], BLUR_TOLERANCE),
    ("sharpen", [{"op": "sharpen", "radius": 2}], SHARPEN_TOLERANCE),
    ("brightness", [{"op": "adjust", "brightness": 25}], ADJUST_TOLERANCE),
    ("contrast", [{"op": "adjust", "contrast": 60}], ADJUST_TOLERANCE),
    ("adjust-both", [{"op": "adjust", "brightness": -20, "contrast": -40}], ADJUST_TOLERANCE),
    ("watermark-southeast", [{"op": "watermark", "text": "renderq"}], WATERMARK_TOLERANCE),
    (
        "watermark-northwest",
        [{"op": "watermark", "text": "© 2025", "gravity": "northwest", "color": "#000000"}],
        WATERMARK_TOLERANCE,
    ),
    (
        "watermark-center",
        [{"op": "watermark", "text": "PROOF", "size": 48, "gravity": "center"}],
        WATERMARK_TOLERANCE,
    ),
    (
        "watermark-north-margin",
        [{"op": "watermark", "text": "top", "gravity": "north", "margin": 30}],
        WATERMARK_TOLERANCE,
    ),
    (
        "watermark-clipped",
        [{"op": "watermark", "text": "far too wide", "size": 90, "gravity": "west"}],
        WATERMARK_TOLERANCE,
    ),
]


def picture() -> Image.Image:
    """Smooth gradients in every channel, with hard-edged shapes in known places."""
    red = Image.linear_gradient("L").rotate(90).resize(PICTURE_SIZE)
    green = Image.linear_gradient("L").resize(PICTURE_SIZE)
    blue = Image.radial_gradient("L").resize(PICTURE_SIZE)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 39, 39), fill=RED)
    draw.rectangle((250, 20, 299, 69), fill=BLUE)
    draw.ellipse((120, 60, 200, 140), fill="white", outline="black", width=3)
    draw.line((20, 180, 300, 120), fill="black", width=2)
    draw.text((60, 150), "renderq", fill="black")
    return image


@cache
def phone_jpeg(icc: bytes | None = None) -> bytes:
    """The picture stored sideways, as a phone does: EXIF orientation 6 and a GPS position."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "renderq camera"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", GPS_LATITUDE
    out = io.BytesIO()
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    picture().save(out, "JPEG", quality=95, exif=exif, comment=b"secret comment", **options)
    return out.getvalue()


@cache
def alpha_png() -> bytes:
    """The picture with a clear top-right quarter and half-transparent areas."""
    image = picture().convert("RGBA")
    alpha = Image.new("L", PICTURE_SIZE, 255)
    draw = ImageDraw.Draw(alpha)
    draw.rectangle((160, 0, 319, 99), fill=0)
    draw.rectangle((0, 100, 159, 199), fill=128)
    draw.ellipse((200, 120, 300, 190), fill=60)
    image.putalpha(alpha)
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret text chunk")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=text)
    return out.getvalue()


@cache
def palette_gif() -> bytes:
    """A palette GIF whose index 0 is transparent, filling its left 100 columns."""
    width, height = PICTURE_SIZE
    paletted = picture().quantize(255)
    indices = bytearray(v + 1 for v in paletted.tobytes())  # index 0 is kept for "clear"
    for y in range(height):
        indices[y * width : y * width + 100] = bytes(100)
    clear = Image.frombytes("P", PICTURE_SIZE, bytes(indices))
    clear.putpalette([0, 0, 0, *(paletted.getpalette() or [])[: 255 * 3]])
    out = io.BytesIO()
    clear.save(out, "GIF", transparency=0)
    return out.getvalue()


def upload(name: str) -> tuple[bytes, str, Size]:
    """(bytes, input format, upright size) of a named input."""
    if name == "png":
        return alpha_png(), "png", PICTURE_SIZE
    if name == "jpeg":
        return phone_jpeg(), "jpeg", UPRIGHT_SIZE
    return palette_gif(), "gif", PICTURE_SIZE


def image_request(
    ops: list[dict[str, Any]], size: Size, input_format: str, **options: Any
) -> ImageRequest:
    parsed = parse_operations(ops, SETTINGS)
    return ImageRequest(
        ops=parsed,
        format=options.get("format", "png"),
        quality=options.get("quality", 85),
        engine=options.get("engine", "pillow"),
        keep_metadata=options.get("keep_metadata", False),
        input_format=input_format,
        orientation=options.get("orientation", 1),
        input_size=size,
        sizes=tuple(plan_sizes(size, parsed, SETTINGS)),
    )


def transform_bytes(
    engine: str, name: str, ops: list[dict[str, Any]] | None = None, **options: Any
) -> bytes:
    data, input_format, size = upload(name)
    orientation = probe_image(data).orientation
    request = image_request(
        ops or [], size, input_format, engine=engine, orientation=orientation, **options
    )
    return RENDERERS[engine].transform_image(data, request, SETTINGS)


def transform(
    engine: str, name: str, ops: list[dict[str, Any]] | None = None, **options: Any
) -> Image.Image:
    return decode(transform_bytes(engine, name, ops, **options))


def planned_size(name: str, ops: list[dict[str, Any]]) -> Size:
    _, _, size = upload(name)
    return plan_sizes(size, parse_operations(ops, SETTINGS), SETTINGS)[-1]


@pytest.mark.parametrize("name", ["png", "jpeg"])
@pytest.mark.parametrize(
    ("ops", "tolerance"),
    [pytest.param(ops, tolerance, id=case) for case, ops, tolerance in OP_CASES],
)
def test_engines_make_the_planned_size_and_nearly_the_same_pixels(
    name: str, ops: list[dict[str, Any]], tolerance: float
) -> None:
    pillow, magick = (transform(engine, name, ops) for engine in ("pillow", "imagemagick"))
    assert pillow.size == planned_size(name, ops)
    assert magick.size == pillow.size
    assert channel_difference(pillow, magick) <= tolerance


@pytest.mark.parametrize("engine", ENGINES)
def test_ops_chain_in_order(engine: str) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "crop", "x": 10, "y": 10, "width": 180, "height": 300},
        {"op": "rotate", "degrees": 90},
        {"op": "resize", "width": 150},
        {"op": "grayscale"},
    ]
    image = transform(engine, "jpeg", ops)
    assert image.size == (150, 90)
    for point in ((5, 5), (75, 45), (140, 80)):
        red, green, blue = rgba_at(image, point)[:3]
        assert red == green == blue


@pytest.mark.parametrize("engine", ENGINES)
def test_a_size_off_the_plan_is_a_render_failure(engine: str) -> None:
    data, input_format, size = upload("png")
    request = image_request([{"op": "rotate", "degrees": 90}], size, input_format)
    wrong = dataclasses.replace(request, engine=engine, sizes=(size,))
    with pytest.raises(RenderFailed) as caught:
        RENDERERS[engine].transform_image(data, wrong, SETTINGS)
    assert caught.value.code is ErrorCode.RENDER_FAILED


def rgba_at(image: Image.Image, point: tuple[int, int]) -> tuple[int, ...]:
    color = image.convert("RGBA").getpixel(point)
    assert isinstance(color, tuple)
    return color


def mean_color(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, ...]:
    region = image.convert("RGB").crop(box).resize((1, 1), Image.Resampling.BOX)
    color = region.getpixel((0, 0))
    assert isinstance(color, tuple)
    return color


def near(color: tuple[int, ...], expected: tuple[int, ...], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(color, expected, strict=True))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("op", "red_box"),
    [
        ({"op": "rotate", "degrees": 90}, (165, 5, 195, 35)),  # clockwise: top-left to top-right
        ({"op": "rotate", "degrees": -90}, (5, 285, 35, 315)),
        ({"op": "rotate", "degrees": 180}, (285, 165, 315, 195)),
        ({"op": "flip", "direction": "horizontal"}, (285, 5, 315, 35)),
        ({"op": "flip", "direction": "vertical"}, (5, 165, 35, 195)),
    ],
    ids=["rotate-90", "rotate-minus-90", "rotate-180", "flip-horizontal", "flip-vertical"],
)
def test_turns_and_flips_go_the_documented_way(
    engine: str, op: dict[str, Any], red_box: tuple[int, int, int, int]
) -> None:
    image = transform(engine, "png", [op])
    assert near(mean_color(image, red_box), RED)


@pytest.mark.parametrize("engine", ENGINES)
def test_exif_orientation_is_applied_and_metadata_stripped(engine: str) -> None:
    out = transform_bytes(engine, "jpeg", format="jpeg")
    image = decode(out)
    assert image.size == UPRIGHT_SIZE
    # Turned 90 degrees clockwise: the stored top-left red square is now top-right, the
    # blue square near the stored top-right corner is now near the bottom-right.
    assert near(mean_color(image, (165, 5, 195, 35)), RED)
    assert not near(mean_color(image, (5, 5, 35, 35)), RED)
    assert near(mean_color(image, (135, 255, 175, 295)), BLUE)
    assert not image.getexif()
    assert "exif" not in image.info
    assert "comment" not in image.info


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_kept_exif_says_upright(engine: str, fmt: str) -> None:
    image = transform(engine, "jpeg", format=fmt, keep_metadata=True)
    assert image.size == UPRIGHT_SIZE
    exif = image.getexif()
    assert exif[0x0112] == 1
    assert exif[0x010F] == "renderq camera"
    assert exif.get_ifd(0x8825)[2] == GPS_LATITUDE


@pytest.mark.parametrize("engine", ENGINES)
def test_png_text_chunks_are_dropped(engine: str) -> None:
    image = transform(engine, "png")
    assert isinstance(image, PngImagePlugin.PngImageFile)
    assert not image.text
    assert not image.getexif()


def srgb_icc() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_icc_profile_is_kept(engine: str, fmt: str) -> None:
    icc = srgb_icc()
    data = phone_jpeg(icc)
    orientation = probe_image(data).orientation
    request = image_request(
        [], UPRIGHT_SIZE, "jpeg", engine=engine, format=fmt, orientation=orientation
    )
    image = decode(RENDERERS[engine].transform_image(data, request, SETTINGS))
    assert image.info.get("icc_profile") == icc


def linear_rgb_icc() -> bytes:
    """A minimal ICC v2 profile: sRGB's primaries with a linear tone curve (gamma 1.0).

    Unlike sRGB to sRGB, converting from it changes the pixels: linear 128 is sRGB 188.
    """

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    name = b"linear sRGB\x00"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(78)),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        *(
            (trc, b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0100) + bytes(2))
            for trc in (b"rTRC", b"gTRC", b"bTRC")
        ),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        padded = body + bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(padded))
        data += padded
    header = (
        struct.pack(">I", offset + len(data))
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + data


@cache
def linear_gray_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(out, "PNG", icc_profile=linear_rgb_icc())
    return out.getvalue()


@pytest.mark.parametrize("engine", ENGINES)
def test_gif_output_gets_the_pixels_converted_to_srgb(engine: str) -> None:
    request = image_request([], (64, 64), "png", engine=engine, format="gif")
    image = decode(RENDERERS[engine].transform_image(linear_gray_png(), request, SETTINGS))
    assert image.format == "GIF"
    assert not image.info.get("icc_profile")
    assert near(rgba_at(image, (30, 30)), (188, 188, 188, 255), 2)


@pytest.mark.parametrize("engine", ENGINES)
def test_png_output_keeps_the_profile_and_the_pixels(engine: str) -> None:
    request = image_request([], (64, 64), "png", engine=engine, format="png")
    image = decode(RENDERERS[engine].transform_image(linear_gray_png(), request, SETTINGS))
    assert image.info.get("icc_profile") == linear_rgb_icc()
    assert rgba_at(image, (30, 30))[:3] == (128, 128, 128)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "gif"])
def test_output_formats(engine: str, fmt: str) -> None:
    image = transform(engine, "png", format=fmt)
    assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}[fmt]
    assert image.size == PICTURE_SIZE
    clear, opaque = rgba_at(image, (300, 10)), rgba_at(image, (20, 20))
    assert near(opaque, (*RED, 255))
    if fmt == "jpeg":
        assert image.mode == "RGB"
        assert near(clear, (255, 255, 255, 255), 8)  # flattened onto white
    else:
        assert clear[3] == 0  # still transparent


@pytest.mark.parametrize("engine", ENGINES)
def test_half_transparency_is_kept(engine: str) -> None:
    for fmt in ("png", "webp"):
        image = transform(engine, "png", format=fmt)
        assert abs(rgba_at(image, (40, 150))[3] - 128) <= 2
        assert abs(rgba_at(image, (250, 155))[3] - 60) <= 2


@pytest.mark.parametrize("engine", ENGINES)
def test_jpeg_quality_is_applied(engine: str) -> None:
    low = transform_bytes(engine, "jpeg", format="jpeg", quality=30)
    high = transform_bytes(engine, "jpeg", format="jpeg", quality=95)
    assert len(low) < len(high)
    assert decode(low).format == "JPEG"


def test_palette_gif_keeps_its_transparency() -> None:
    pillow, magick = (transform(engine, "gif") for engine in ("pillow", "imagemagick"))
    for image in (pillow, magick):
        assert image.size == PICTURE_SIZE
        assert rgba_at(image, (50, 100))[3] == 0
        assert rgba_at(image, (200, 100))[3] == 255
    assert channel_difference(pillow, magick) <= LOSSLESS_TOLERANCE
    for engine in ENGINES:
        assert rgba_at(transform(engine, "gif", format="gif"), (50, 100))[3] == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("body", "input_format"),
    [
        (b"this is not an image", "png"),
        (b"", "jpeg"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "jpeg"),
        (b"GIF89a" + b"\x00" * 12, "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
    ],
    ids=["text", "empty", "jpeg-header-only", "gif-header-only", "webp-header-only"],
)
def test_a_body_that_is_not_an_image_is_refused(
    engine: str, body: bytes, input_format: str
) -> None:
    request = image_request([], (10, 10), input_format, engine=engine)
    with pytest.raises(InvalidRequest) as caught:
        RENDERERS[engine].transform_image(body, request, SETTINGS)
    assert caught.value.code is ErrorCode.INVALID_IMAGE


@pytest.mark.parametrize("engine", ENGINES)
def test_the_stated_format_is_used_not_guessed(engine: str) -> None:
    request = image_request([], UPRIGHT_SIZE, "png", engine=engine)
    with pytest.raises(InvalidRequest) as caught:
        RENDERERS[engine].transform_image(phone_jpeg(), request, SETTINGS)
    assert caught.value.code is ErrorCode.INVALID_IMAGE


@pytest.mark.parametrize(
    ("gravity", "expected"),
    [
        ("northwest", (10, 10)),
        ("north", (70, 10)),
        ("northeast", (130, 10)),
        ("west", (10, 80)),
        ("center", (70, 80)),
        ("east", (130, 80)),
        ("southwest", (10, 150)),
        ("south", (70, 150)),
        ("southeast", (130, 150)),
    ],
)
def test_watermark_position(gravity: str, expected: tuple[int, int]) -> None:
    assert watermark_position((200, 200), (60, 40), gravity, 10) == expected


def test_watermark_larger_than_the_image_is_centred_off_the_edges() -> None:
    assert watermark_position((100, 50), (161, 70), "center", 10) == (-31, -10)
    assert watermark_position((100, 50), (161, 70), "southeast", 0) == (-61, -20)
