"""Image jobs through the HTTP API: multipart and raw uploads, limits, op validation."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image
from redis import Redis
from starlette.testclient import TestClient

from renderq.keys import Keys
from renderq.settings import Settings
from service.app import create_app
from tests.conftest import environ_for, queued_anything
from tests.images import decode
from worker.loop import Worker

RunWorker = Callable[..., Worker]
THUMBNAIL = [{"op": "resize", "width": 64, "height": 64, "fit": "cover"}]


def picture(fmt: str = "PNG", size: tuple[int, int] = (160, 100), **save: Any) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height`, with a token of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + ihdr + pixels


def post_multipart(client: TestClient, data: bytes, **fields: str) -> Any:
    files = {"file": ("upload.bin", data, "application/octet-stream")}
    return client.post("/jobs", files=files, data=fields)


def post_raw(
    client: TestClient, data: bytes, content_type: str = "image/png", **params: str
) -> Any:
    return client.post("/jobs", content=data, headers={"content-type": content_type}, params=params)


def result(client: TestClient, job_id: str) -> Any:
    return client.get(f"/jobs/{job_id}")


def test_multipart_thumbnail(client: TestClient, run_worker: RunWorker, redis: Redis) -> None:
    response = post_multipart(client, picture("JPEG"), ops=json.dumps(THUMBNAIL))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "image"
    assert body["format"] == "jpeg", "the input's format is the default output"
    assert redis.exists(Keys().input(body["id"])) == 1
    run_worker()
    image_response = result(client, body["id"])
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/jpeg"
    assert decode(image_response.content).size == (64, 64)
    assert redis.exists(Keys().input(body["id"])) == 0, "the upload is dropped once done"


@pytest.mark.parametrize(
    ("op", "size"),
    [
        ({"op": "resize", "width": 80}, (80, 50)),
        ({"op": "resize", "height": 25}, (40, 25)),
        ({"op": "resize", "width": 80, "fit": "inside"}, (80, 50)),
        ({"op": "rotate", "degrees": 90}, (100, 160)),
    ],
)
def test_an_op_with_fields_left_out_renders(
    client: TestClient, run_worker: RunWorker, op: dict[str, Any], size: tuple[int, int]
) -> None:
    """The worker validates the stored request again: what the client left out stays out
    of it, and is not turned into a null the second reading refuses."""
    response = post_multipart(client, picture("PNG"), ops=json.dumps([op]))
    assert response.status_code == 202, response.text
    run_worker()
    image_response = result(client, response.json()["id"])
    assert image_response.status_code == 200, image_response.text
    assert decode(image_response.content).size == size


def test_raw_body_thumbnail(client: TestClient, run_worker: RunWorker) -> None:
    response = post_raw(
        client, picture("PNG"), ops=json.dumps(THUMBNAIL), format="webp", quality="70"
    )
    assert response.status_code == 202, response.text
    run_worker()
    image_response = result(client, response.json()["id"])
    assert image_response.headers["content-type"] == "image/webp"
    image = decode(image_response.content)
    assert image.format == "WEBP"
    assert image.size == (64, 64)


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_format_comes_from_the_bytes_not_the_name_or_type(
    client: TestClient, run_worker: RunWorker, engine: str
) -> None:
    # GIF bytes sent as "image/png" named upload.bin: treated as the GIF they are.
    response = post_raw(client, picture("GIF"), "image/png", engine=engine)
    assert response.status_code == 202
    assert response.json()["format"] == "gif"
    run_worker()
    assert decode(result(client, response.json()["id"]).content).format == "GIF"


def test_bmp_and_tiff_default_to_png_output(client: TestClient) -> None:
    for fmt in ("BMP", "TIFF"):
        response = post_raw(client, picture(fmt), "application/octet-stream")
        assert response.status_code == 202, response.text
        assert response.json()["format"] == "png"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%!PS-Adobe-3.0\n",
        b"push graphic-context\nviewbox 0 0 1 1\n",
        bytes(range(256)),
    ],
)
def test_unknown_formats_are_415(client: TestClient, redis: Redis, data: bytes) -> None:
    for response in (post_raw(client, data), post_multipart(client, data)):
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_image_format"
    assert not queued_anything(redis)


def test_non_image_content_type_is_415(client: TestClient) -> None:
    response = client.post("/jobs", content=picture(), headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_upload_over_the_limit_is_cut_off_with_413(redis_url: str, redis: Redis) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_MAX_UPLOAD_BYTES="50000"))
    big = picture("BMP", (200, 200))  # 120 kB
    assert len(big) > 50000
    with TestClient(create_app(settings)) as client:
        for response in (post_raw(client, big), post_multipart(client, big)):
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "body_too_large"

        # Streamed with no Content-Length: cut off while reading all the same.
        def chunks() -> Any:
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        streamed = client.post("/jobs", content=chunks(), headers={"content-type": "image/bmp"})
        assert streamed.status_code == 413
    assert not queued_anything(redis)


@pytest.mark.parametrize(
    ("width", "height"), [(100_000, 100_000), (20_000, 10), (10, 20_000), (8000, 7000)]
)
def test_pixel_limits_come_from_the_header(
    client: TestClient, redis: Redis, width: int, height: int
) -> None:
    response = post_raw(client, png_header_only(width, height))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_too_large"
    assert not queued_anything(redis)


def test_animated_input_is_refused(client: TestClient) -> None:
    frames = [Image.new("RGB", (20, 20), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    response = post_raw(client, out.getvalue(), "image/gif")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "animated_image"


@pytest.mark.parametrize(
    ("ops", "code", "field"),
    [
        ([{"op": "explode"}], "unknown_operation", "ops[0].op"),
        ([{"width": 3}], "unknown_operation", "ops[0].op"),
        ([{"op": "resize"}], "missing_field", "ops[0].width"),
        ([{"op": "resize", "width": 10, "fit": "cover"}], "missing_field", "ops[0].height"),
        ([{"op": "resize", "width": 10, "fit": "squash"}], "invalid_parameter", "ops[0].fit"),
        ([{"op": "resize", "width": 0}], "out_of_range", "ops[0].width"),
        ([{"op": "grayscale"}, {"op": "blur", "radius": 500}], "out_of_range", "ops[1].radius"),
        ([{"op": "blur", "radius": "a lot"}], "invalid_type", "ops[0].radius"),
        ([{"op": "sharpen"}], "missing_field", "ops[0].radius"),
        ([{"op": "rotate", "degrees": 720}], "out_of_range", "ops[0].degrees"),
        ([{"op": "flip", "direction": "diagonal"}], "invalid_parameter", "ops[0].direction"),
        ([{"op": "adjust", "brightness": 101}], "out_of_range", "ops[0].brightness"),
        ([{"op": "grayscale", "amount": 1}], "unknown_field", "ops[0].amount"),
        (
            [{"op": "crop", "x": 0, "y": 0, "width": 500, "height": 10}],
            "out_of_range",
            "ops[0].width",
        ),
        (
            [{"op": "crop", "x": 150, "y": 0, "width": 20, "height": 10}],
            "out_of_range",
            "ops[0].width",
        ),
        (
            [{"op": "watermark", "text": "x", "font": "/x.ttf"}],
            "unknown_font",
            "ops[0].font",
        ),
        ([{"op": "watermark", "text": ""}], "invalid_text", "ops[0].text"),
        ([{"op": "watermark", "text": "hi", "color": "url(x)"}], "invalid_color", "ops[0].color"),
        (
            [{"op": "watermark", "text": "hi", "gravity": "up"}],
            "invalid_parameter",
            "ops[0].gravity",
        ),
        (
            [{"op": "resize", "width": 16000, "height": 16000, "fit": "fill"}],
            "image_too_large",
            "ops[0]",
        ),
        ([{"op": "grayscale"}] * 21, "out_of_range", "ops"),
        ({"op": "grayscale"}, "invalid_type", "ops"),
        (["grayscale"], "invalid_type", "ops[0]"),
    ],
)
def test_bad_ops_are_refused_naming_op_and_field(
    client: TestClient, redis: Redis, ops: Any, code: str, field: str
) -> None:
    response = post_multipart(client, picture(), ops=json.dumps(ops))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert not queued_anything(redis)


@pytest.mark.parametrize(
    ("fields", "status", "code", "field"),
    [
        ({"ops": "[{"}, 400, "invalid_json", "ops"),
        ({"format": "svg"}, 422, "unknown_format", "format"),
        ({"format": "png:/tmp/x"}, 422, "unknown_format", "format"),
        ({"quality": "0"}, 422, "out_of_range", "quality"),
        ({"quality": "high"}, 422, "invalid_type", "quality"),
        ({"engine": "gd"}, 422, "unknown_engine", "engine"),
        ({"keep_metadata": "maybe"}, 422, "invalid_type", "keep_metadata"),
        ({"colour": "red"}, 422, "unknown_field", "colour"),
    ],
)
def test_bad_parameters_are_refused(
    client: TestClient, fields: dict[str, str], status: int, code: str, field: str
) -> None:
    for response in (
        post_multipart(client, picture(), **fields),
        post_raw(client, picture(), **fields),
    ):
        assert response.status_code == status, response.text
        assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
            code,
            field,
        )


def test_multipart_without_a_file_is_400(client: TestClient) -> None:
    response = client.post("/jobs", files={"ops": (None, "[]")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_form"


def test_corrupt_image_fails_the_job_with_422(client: TestClient, run_worker: RunWorker) -> None:
    # A valid PNG header with no image data: accepted from the header, refused on decoding.
    response = post_raw(client, png_header_only(50, 50))
    assert response.status_code == 202
    run_worker()
    failed = result(client, response.json()["id"])
    assert failed.status_code == 422
    assert failed.json()["error"]["code"] == "invalid_image"


def test_expired_upload_fails_the_job(
    client: TestClient, run_worker: RunWorker, redis: Redis
) -> None:
    response = post_raw(client, picture())
    job_id = response.json()["id"]
    redis.delete(Keys().input(job_id))
    run_worker()
    assert result(client, job_id).json()["error"]["code"] == "invalid_job"


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_phone_photo_is_planned_and_rendered_upright(
    client: TestClient, run_worker: RunWorker, engine: str
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 160x100, shown 100x160
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 0.0)  # GPS latitude
    photo = picture("JPEG", exif=exif)
    # This crop fits only the upright image: 120 > 100 stored rows.
    ops = [{"op": "crop", "x": 0, "y": 0, "width": 100, "height": 120}]
    response = post_multipart(client, photo, ops=json.dumps(ops), engine=engine)
    assert response.status_code == 202, response.text
    run_worker()
    done = result(client, response.json()["id"])
    assert done.status_code == 200, done.text
    image = decode(done.content)
    assert image.size == (100, 120)
    assert not image.getexif(), "EXIF and GPS are stripped"
