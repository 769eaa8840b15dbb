"""AVIF through the whole service: written by Pillow, refused by ImageMagick (which cannot write
it in the sandbox), read by both, and refused where one engine's decoder would read it wrong."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image
from redis import Redis
from starlette.testclient import TestClient

from tests.conftest import queued_anything
from tests.images import decode
from tests.test_avif_header import avif, ispe, pillow_avif
from tests.test_image_api import picture, post_multipart, post_raw, result
from worker.loop import Worker

RunWorker = Callable[..., Worker]
HALF = json.dumps([{"op": "resize", "width": 160}])


def grainy_png() -> bytes:
    """picture() at 320x200 with some grain, so that a lossy encoder's quality shows in its size."""
    plain = Image.open(io.BytesIO(picture("PNG", (320, 200)))).convert("RGB")
    grain = Image.effect_noise(plain.size, 64).convert("RGB")
    out = io.BytesIO()
    Image.blend(plain, grain, 0.15).save(out, "PNG")
    return out.getvalue()


def translucent_png() -> bytes:
    image = Image.new("RGBA", (40, 30), (200, 30, 30, 255))
    image.paste((20, 20, 220, 0), (0, 0, 20, 30))  # the left half fully see-through
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.convert("RGBA").getpixel(xy)
    assert isinstance(value, tuple)
    return value


def accepted(response: Any) -> str:
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def avif_result(client: TestClient, job_id: str) -> Image.Image:
    response = result(client, job_id)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/avif"
    image = decode(response.content)
    assert image.format == "AVIF"
    return image


def test_pillow_writes_avif(client: TestClient, run_worker: RunWorker) -> None:
    low, high = (
        accepted(post_raw(client, grainy_png(), ops=HALF, format="avif", quality=q))
        for q in ("10", "95")
    )
    alpha = accepted(post_raw(client, translucent_png(), format="avif"))
    text = accepted(client.post("/jobs", json={"text": "renderq", "format": "avif"}))
    run_worker()
    sizes = {job: len(result(client, job).content) for job in (low, high)}
    assert sizes[high] > 2 * sizes[low], f"the quality changed nothing: {sizes}"
    for job in (low, high):
        image = avif_result(client, job)
        assert image.size == (160, 100)
        red, green, blue, _ = pixel(image, (120, 80))  # picture(): red, blue top-left quarter
        assert red > 170 and green < 70 and blue < 70
    see_through = avif_result(client, alpha)
    assert pixel(see_through, (5, 15))[3] == 0, "AVIF keeps the alpha channel"
    assert pixel(see_through, (35, 15))[3] == 255
    assert avif_result(client, text).width > 0


def test_imagemagick_cannot_write_avif(client: TestClient, redis: Redis) -> None:
    image = post_raw(client, picture(), format="avif", engine="imagemagick")
    text = client.post("/jobs", json={"text": "renderq", "format": "avif", "engine": "imagemagick"})
    for response in (image, text):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "unsupported_format"
        assert response.json()["error"]["field"] == "format"
    assert not queued_anything(redis)


@pytest.mark.parametrize(("engine", "output"), [("pillow", "avif"), ("imagemagick", "png")])
def test_avif_input_defaults_to_what_the_engine_writes(
    client: TestClient, engine: str, output: str
) -> None:
    upload = pillow_avif(Image.open(io.BytesIO(picture("PNG"))))
    assert post_raw(client, upload, "image/avif", engine=engine).json()["format"] == output


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_avif_input_renders_upright_on_both_engines(
    client: TestClient, run_worker: RunWorker, engine: str
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 160x100 (irot), shown 100x160
    upload = pillow_avif(Image.open(io.BytesIO(picture("PNG"))), exif=exif, quality=90)
    ops = [{"op": "crop", "x": 0, "y": 0, "width": 100, "height": 120}]  # fits upright only
    response = post_multipart(client, upload, ops=json.dumps(ops), engine=engine, format="png")
    job_id = accepted(response)
    run_worker()
    done = result(client, job_id)
    assert done.status_code == 200, done.text
    image = decode(done.content)
    assert image.size == (100, 120)
    # The stored blue top-left quarter is, turned a quarter clockwise, at the top right.
    assert pixel(image, (90, 10))[2] > 170
    assert pixel(image, (10, 10))[0] > 170


def test_avif_alpha_is_read_by_pillow_and_refused_by_imagemagick(
    client: TestClient, run_worker: RunWorker, redis: Redis
) -> None:
    upload = pillow_avif(Image.new("RGBA", (40, 30), (200, 30, 30, 100)))
    refused = post_raw(client, upload, "image/avif", engine="imagemagick", format="png")
    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "unsupported_image_format"
    assert not queued_anything(redis)
    job_id = accepted(post_raw(client, upload, "image/avif", format="png"))
    run_worker()
    assert abs(pixel(decode(result(client, job_id).content), (20, 15))[3] - 100) <= 2


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (avif([ispe(100_000, 100_000)]), "image_too_large"),
        (avif([ispe(9000, 9000)]), "image_too_large"),  # 81 MP, under each side's limit
        (avif(brand=b"avis"), "animated_image"),
        (avif([]), "invalid_image"),
    ],
    ids=["huge-ispe", "over-the-pixel-limit", "sequence", "no-ispe"],
)
def test_avif_refused_from_the_header(
    client: TestClient, redis: Redis, data: bytes, code: str
) -> None:
    response = post_raw(client, data, "image/avif")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert not queued_anything(redis)
