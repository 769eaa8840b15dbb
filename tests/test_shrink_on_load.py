"""Shrink-on-load: a resize first lets the decoder scale down, and the result still looks like
a full decode plus LANCZOS at the same size (mean absolute difference at most 2 of 255)."""

from __future__ import annotations

import io
import random
from functools import cache
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageOps

from renderq.geometry import Size, plan_resize, plan_sizes
from renderq.image_header import probe_image
from renderq.image_request import ImageRequest
from renderq.operations import Resize, parse_operations
from renderq.settings import Settings
from tests.images import channel_difference, decode
from worker.engines import RENDERERS
from worker.engines.imagemagick import image as magick_image
from worker.engines.pillow import image as pillow_image
from worker.engines.shrink_on_load import ShrinkOnLoad, decoded_sizes, plan_shrink_on_load

SETTINGS = Settings.from_env({})
ENGINES = sorted(RENDERERS)
PHOTO_SIZE = (1600, 1200)
# The bound: visually the same as a full decode plus LANCZOS.
MAX_DIFFERENCE = 2.0


@cache
def photo() -> Image.Image:
    """Gradients with noise, like a photo's texture, and hard edges where resampling shows."""
    width, height = PHOTO_SIZE
    gradient = Image.linear_gradient("L").resize(PHOTO_SIZE)
    noise = Image.frombytes("L", PHOTO_SIZE, random.Random(7).randbytes(width * height))
    blue = Image.blend(gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), noise, 0.35)
    green = gradient.transpose(Image.Transpose.ROTATE_90).resize(PHOTO_SIZE)
    image = Image.merge("RGB", (gradient, green, blue))
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 100, 500, 400), fill="red")
    draw.ellipse((800, 300, 1400, 900), fill="white", outline="black", width=9)
    draw.line((0, 1100, 1600, 700), fill="black", width=5)
    return image


@cache
def encoded(fmt: str, orientation: int = 1) -> bytes:
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": 90} if fmt == "jpeg" else {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    photo().save(out, fmt.upper(), **options)
    return out.getvalue()


def request_for(data: bytes, ops: list[dict[str, Any]], engine: str) -> ImageRequest:
    header = probe_image(data)
    parsed = parse_operations(ops, SETTINGS)
    return ImageRequest(
        ops=parsed,
        format="png",
        quality=85,
        engine=engine,
        input_format=header.format,
        orientation=header.orientation,
        input_size=header.upright_size,
        sizes=tuple(plan_sizes(header.upright_size, parsed, SETTINGS)),
    )


def full_decode_reference(data: bytes, ops: list[dict[str, Any]], size: Size) -> Image.Image:
    """What the ops give from the whole image: full decode, upright, LANCZOS, then the rest."""
    image = ImageOps.exif_transpose(decode(data).convert("RGB"))
    for op in ops:
        if op["op"] == "flip":
            image = ImageOps.mirror(image)
        elif op["op"] == "grayscale":
            image = ImageOps.grayscale(image).convert("RGB")
        elif op["op"] == "rotate":
            image = image.transpose(Image.Transpose.ROTATE_270)  # 90 clockwise
        else:
            resize = parse_operations([op], SETTINGS)[0]
            assert isinstance(resize, Resize)
            plan = plan_resize(image.size, resize)
            image = image.resize(plan.scaled, Image.Resampling.LANCZOS)
            if plan.crop is not None:
                image = image.crop(plan.crop)
    assert image.size == size
    return image


SHRINK_CASES: list[tuple[str, str, int, list[dict[str, Any]]]] = [
    ("jpeg-contain", "jpeg", 1, [{"op": "resize", "width": 256, "height": 256}]),
    ("jpeg-cover", "jpeg", 1, [{"op": "resize", "width": 200, "height": 200, "fit": "cover"}]),
    ("jpeg-width", "jpeg", 1, [{"op": "resize", "width": 300}]),
    ("jpeg-exif-turned", "jpeg", 6, [{"op": "resize", "width": 160, "height": 240}]),
    (
        "jpeg-after-flip-gray-turn",
        "jpeg",
        1,
        [
            {"op": "flip", "direction": "horizontal"},
            {"op": "grayscale"},
            {"op": "rotate", "degrees": 90},
            {"op": "resize", "width": 150},
        ],
    ),
    ("png-reduced", "png", 1, [{"op": "resize", "width": 120}]),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("fmt", "orientation", "ops"),
    [pytest.param(*case[1:], id=case[0]) for case in SHRINK_CASES],
)
def test_shrunk_output_looks_like_a_full_decode(
    engine: str, fmt: str, orientation: int, ops: list[dict[str, Any]]
) -> None:
    data = encoded(fmt, orientation)
    request = request_for(data, ops, engine)
    # A PNG is decoded whole (only a JPEG decoder scales): its resize still reduces first.
    assert (plan_shrink_on_load(request) is not None) == (fmt == "jpeg")
    result = decode(RENDERERS[engine].transform_image(data, request, SETTINGS))
    assert result.size == request.sizes[-1]
    reference = full_decode_reference(data, ops, result.size)
    assert channel_difference(result, reference) <= MAX_DIFFERENCE


@pytest.mark.parametrize("engine", ENGINES)
def test_the_jpeg_decoder_really_scales_down(engine: str) -> None:
    """A 256 px thumbnail of a 1600x1200 JPEG decodes a quarter of each side, not the whole."""
    data = encoded("jpeg")
    request = request_for(data, [{"op": "resize", "width": 256, "height": 256}], engine)
    shrink = plan_shrink_on_load(request)
    assert shrink == ShrinkOnLoad((256, 192), 0)
    if engine == "pillow":
        decoded = pillow_image._decode(data, request, shrink)[0]
        size = decoded.size
    else:
        decoded = magick_image._decode(data, request, shrink)[0]
        size = tuple(decoded.size)
        decoded.close()
    assert size == (400, 300)


def test_a_decoder_may_hand_over_only_a_scale_of_the_declared_size() -> None:
    data = encoded("jpeg")
    request = request_for(data, [{"op": "resize", "width": 256}], "pillow")
    shrink = plan_shrink_on_load(request)
    allowed = decoded_sizes(request, shrink)
    assert (400, 300) in allowed and PHOTO_SIZE in allowed
    assert (200, 150) not in allowed, "smaller than the resize needs"
    assert (401, 300) not in allowed
    assert decoded_sizes(request, None) == {PHOTO_SIZE}


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([{"op": "crop", "x": 0, "y": 0, "width": 800, "height": 600}], id="crop"),
        pytest.param([{"op": "blur", "radius": 2}, {"op": "resize", "width": 100}], id="blur"),
        pytest.param([{"op": "rotate", "degrees": 30}, {"op": "resize", "width": 99}], id="turn"),
        pytest.param([{"op": "resize", "width": 1000}], id="less-than-half"),
        pytest.param([{"op": "grayscale"}], id="no-resize"),
    ],
)
def test_ops_that_need_full_resolution_decode_it_whole(ops: list[dict[str, Any]]) -> None:
    request = request_for(encoded("jpeg"), ops, "pillow")
    assert plan_shrink_on_load(request) is None


@pytest.mark.parametrize("fmt", ["png", "gif", "webp", "bmp", "tiff"])
def test_only_a_jpeg_may_decode_to_another_size(fmt: str) -> None:
    """Other decoders never scale: a size other than the declared one stays refused."""
    data = encoded(fmt)
    request = request_for(data, [{"op": "resize", "width": 100}], "pillow")
    assert plan_shrink_on_load(request) is None
    assert decoded_sizes(request, plan_shrink_on_load(request)) == {PHOTO_SIZE}


def test_a_quarter_turn_before_the_resize_swaps_what_the_decoder_must_keep() -> None:
    ops = [{"op": "rotate", "degrees": 90}, {"op": "resize", "width": 150}]
    request = request_for(encoded("jpeg"), ops, "pillow")
    # Turned, the image is 1200x1600 and becomes 150x200: upright, 200x150 must remain.
    assert plan_shrink_on_load(request) == ShrinkOnLoad((200, 150), 1)
