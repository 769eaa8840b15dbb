"""Hostile input, sent through the real front to a real worker, and what must not happen.

Every case asserts its refusal (the front's status and code, or the failed job's on GET) and
that nothing happened: no connection reached a listener the payloads point at, no file
appeared where the payloads try to write, no /etc/passwd content came back, and the worker
stayed small. The payload families follow ImageTragick (CVE-2016-3714 to 3718) and its kin.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image, PngImagePlugin

from renderq.image_header import probe_image
from tests.conftest import environ_for
from tests.images import decode
from tests.processes import Processes, wait_until
from tests.test_avif_header import avif, ispe

PASSWD_MARK = b"root:x:0:0:"


class Listener:
    """A TCP listener on loopback that counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@dataclass
class Target:
    """The running front and worker, and the traps the payloads aim at."""

    base: str
    worker_pid: int
    listener: Listener
    canary: Path
    seen: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.port}/x.png"

    def fill(self, template: str) -> bytes:
        return template.format(url=self.url, canary=self.canary).encode()


@pytest.fixture(scope="module")
def target(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    procs = Processes(redis_server, tmp_path_factory.mktemp("hostile"), environ_for(redis_server))
    base = procs.start_front()
    worker = procs.start("worker")
    procs.wait_for_log(worker, "worker_started")
    listener = Listener()
    canary = Path("/tmp") / f"renderq-canary-{os.getpid()}"
    try:
        yield Target(base, worker.pid, listener, canary)
    finally:
        listener.close()
        procs.stop_all()


@pytest.fixture(autouse=True)
def nothing_happened(target: Target) -> Iterator[None]:
    tmp_before = _tmp_entries()
    yield
    assert target.listener.connections == 0, "a payload made a network connection"
    assert not target.canary.exists(), "a payload wrote a file"
    assert _tmp_entries() - tmp_before == set(), "files appeared in /tmp"
    assert not any(PASSWD_MARK in body for body in target.seen), "/etc/passwd leaked"
    assert _worker_peak_rss_mib(target.worker_pid) < 400


def _tmp_entries() -> set[str]:
    # The worker's live sandbox dir and pytest's own are expected; anything else is not.
    return {
        name
        for name in os.listdir("/tmp")
        if not name.startswith(("renderq-sandbox-", "pytest-of-", "renderq-redis-"))
    }


def _worker_peak_rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("the worker is gone")


def outcome(target: Target, response: httpx.Response) -> tuple[int, str]:
    """(status, code) of the request: the front's refusal, or the job's end on GET."""
    target.seen.append(response.content)
    if response.status_code != 202:
        return response.status_code, response.json()["error"]["code"]
    final = httpx.get(f"{target.base}{response.headers['location']}?wait=20", timeout=30)
    target.seen.append(final.content)
    if final.status_code == 200:
        return 200, "done"
    return final.status_code, final.json()["error"]["code"]


def post_raw(target: Target, data: bytes, content_type: str = "image/png", **params: str) -> Any:
    return httpx.post(
        f"{target.base}/jobs",
        content=data,
        headers={"content-type": content_type},
        params=params,
        timeout=30,
    )


def post_file(target: Target, data: bytes, filename: str, **fields: str) -> Any:
    files = {"file": (filename, data, "application/octet-stream")}
    return httpx.post(f"{target.base}/jobs", files=files, data=fields, timeout=30)


def post_json(target: Target, body: object) -> Any:
    return httpx.post(f"{target.base}/jobs", json=body, timeout=30)


# --- payloads -------------------------------------------------------------------------

PAYLOADS = {
    "mvg-url": "push graphic-context\nviewbox 0 0 640 480\nfill 'url({url})'\n"
    "pop graphic-context\n",
    "mvg-ephemeral": "push graphic-context\nviewbox 0 0 1 1\n"
    "image over 0,0 0,0 'ephemeral:{canary}'\npop graphic-context\n",
    "mvg-text-file": "push graphic-context\nviewbox 0 0 100 100\n"
    "text 0,0 '@/etc/passwd'\npop graphic-context\n",
    "svg-file": '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">'
    '<image xlink:href="file:///etc/passwd" width="10" height="10"/></svg>',
    "svg-text": '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' width="10" height="10"><image xlink:href="text:/etc/passwd" width="10" height="10"/></svg>',
    "svg-msl": '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' width="10" height="10"><image xlink:href="msl:/tmp/x.msl" width="1" height="1"/></svg>',
    "svg-http": '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' width="10" height="10"><image xlink:href="{url}" width="1" height="1"/></svg>',
    "svg-xxe": '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="10"><text>&x;</text></svg>',
    "msl": '<?xml version="1.0" encoding="UTF-8"?><image><read filename="{url}"/>'
    '<write filename="{canary}"/></image>',
    "eps": "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    "(/etc/passwd) (r) file 100 string readstring pop print\nshowpage\n",
    "ps": "%!PS\n/Helvetica findfont 12 scalefont setfont 10 10 moveto (x) show\n"
    "({canary}) (w) file closefile showpage\n",
    "pdf": "%PDF-1.4\n1 0 obj<</Type/Catalog/OpenAction<</S/Launch/F({canary})>>>>endobj\n"
    "trailer<</Root 1 0 R>>\n%%EOF\n",
}

# Magic bytes that make a file look like an accepted format to something that sniffs.
MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "gif": b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00",
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_scriptable_formats_are_refused_at_the_front(target: Target, name: str) -> None:
    payload = target.fill(PAYLOADS[name])
    for response in (
        post_raw(target, payload, "image/svg+xml"),
        post_file(target, payload, f"x.{name.split('-', maxsplit=1)[0]}"),
    ):
        assert outcome(target, response) == (415, "unsupported_image_format")


@pytest.mark.parametrize("magic", sorted(MAGIC))
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_polyglots_behind_image_magic_are_refused(target: Target, name: str, magic: str) -> None:
    data = MAGIC[magic] + target.fill(PAYLOADS[name])
    for engine in ("pillow", "imagemagick"):
        response = post_file(target, data, f"x.{magic}", engine=engine)
        # Behind the magic is no valid header: refused by the probe before anything queues.
        assert outcome(target, response) == (422, "invalid_image")


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_payload_after_a_valid_image_is_never_read(target: Target, engine: str) -> None:
    # A real PNG with an SVG after its IEND: the worker decodes it as the PNG it says it is.
    image = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 0)).save(image, "PNG")
    data = image.getvalue() + target.fill(PAYLOADS["svg-http"]) + target.fill(PAYLOADS["msl"])
    response = post_file(target, data, "x.svg", engine=engine)
    assert outcome(target, response) == (200, "done")
    assert decode(target.seen[-1]).size == (8, 8)


# --- bombs ----------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, inflated: int) -> bytes:
    """A PNG declaring `width` x `height` whose data inflates to `inflated` zero bytes."""
    packer = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    data = b"".join(packer.compress(block) for _ in range(inflated >> 20)) + packer.flush()
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", data)
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + png_chunk(b"IEND", b"")


def gif_header(width: int, height: int) -> bytes:
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + frame + b"\x3b"


def jpeg_header(width: int, height: int) -> bytes:
    sof = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + b"\x03" + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\x02\x11\x00\x03\x11\x00\xff\xd9"


def webp_header(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def many_frames_gif(frames: int) -> bytes:
    frame = b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    frame += b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0) + frame * frames + b"\x3b"


BOMBS: dict[str, Callable[[], bytes]] = {
    "png-huge-header": lambda: png_bomb(100_000, 100_000, 0),
    "png-inflates-to-gigabytes": lambda: png_bomb(30_000, 30_000, 256 << 20),
    "gif-huge-header": lambda: gif_header(65_535, 65_535),
    "jpeg-huge-header": lambda: jpeg_header(65_500, 65_500),
    "webp-huge-header": lambda: webp_header(16_383, 16_383),
    "avif-huge-header": lambda: avif([ispe(100_000, 100_000)]),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_decompression_bombs_are_refused_from_the_header(target: Target, name: str) -> None:
    data = BOMBS[name]()
    assert len(data) < 2 << 20, "the bomb itself is small"
    assert outcome(target, post_raw(target, data)) == (422, "image_too_large")


def test_animated_gif_with_thousands_of_frames_is_refused(target: Target) -> None:
    response = post_raw(target, many_frames_gif(5000), "image/gif")
    assert outcome(target, response) == (422, "animated_image")


# --- broken files ---------------------------------------------------------------------


def valid_png() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(out, "PNG")
    return out.getvalue()


def avif_with_garbage_data() -> bytes:
    """A valid AVIF's boxes around coded data overwritten with a byte ramp: only the AV1
    decoder can tell, after the probe accepted the header."""
    out = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(out, "AVIF")
    data = out.getvalue()
    start = data.index(b"mdat") + 4
    return data[:start] + bytes(i % 256 for i in range(len(data) - start))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: b"", (415, "unsupported_image_format")),
        (lambda: os.urandom(4096), (415, "unsupported_image_format")),
        (lambda: valid_png()[:20], (422, "invalid_image")),
        (lambda: valid_png()[:200], (422, "invalid_image")),
        (lambda: valid_png()[:-200], (422, "invalid_image")),
        (lambda: jpeg_header(10, 10), (422, "invalid_image")),
        (avif_with_garbage_data, (422, "invalid_image")),
        (lambda: avif_with_garbage_data()[:-10], (422, "invalid_image")),
    ],
    ids=[
        "zero-bytes",
        "random-named-png",
        "cut-in-header",
        "cut-in-data",
        "no-end",
        "no-scan",
        "avif-garbage-data",
        "avif-cut-in-data",
    ],
)
@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_broken_files_are_refused(
    target: Target, make: Callable[[], bytes], expected: tuple[int, str], engine: str
) -> None:
    response = post_file(target, make(), "x.png", engine=engine)
    assert outcome(target, response) == expected


# --- hostile parameters ---------------------------------------------------------------

HOSTILE_TEXT_BODIES: list[tuple[dict[str, Any], int, str]] = [
    ({"text": "@/etc/passwd"}, 422, "unsafe_text"),
    ({"text": "label:@/etc/passwd"}, 422, "unsafe_text"),
    ({"text": "caption:@/etc/passwd", "engine": "imagemagick"}, 422, "unsafe_text"),
    ({"text": "msl:/tmp/x.msl"}, 422, "unsafe_text"),
    ({"text": "ephemeral:/etc/passwd"}, 422, "unsafe_text"),
    ({"text": "%[exif:*] %w"}, 422, "unsafe_text"),
    ({"text": "x", "color": "url(http://127.0.0.1:1/x)"}, 422, "invalid_color"),
    ({"text": "x", "color": "red'; touch /tmp/pwned; '"}, 422, "invalid_color"),
    ({"text": "x", "background": '"$(id)"'}, 422, "invalid_color"),
    ({"text": "x", "font": "/etc/passwd"}, 422, "unknown_font"),
    ({"text": "x", "font": "../../../../etc/passwd"}, 422, "unknown_font"),
    ({"text": "x", "format": "mvg"}, 422, "unknown_format"),
    ({"text": "x", "format": "msl"}, 422, "unknown_format"),
    ({"text": "x", "format": "svg"}, 422, "unknown_format"),
    ({"text": "x", "format": "ephemeral"}, 422, "unknown_format"),
    ({"text": "x", "format": "png:/tmp/x"}, 422, "unknown_format"),
    ({"text": "x", "size": 0}, 422, "out_of_range"),
    ({"text": "x", "size": -12}, 422, "out_of_range"),
    ({"text": "x", "size": 10**30}, 422, "out_of_range"),
    ({"text": "x", "size": "12"}, 422, "invalid_type"),
    ({"text": "x", "width": 1e308}, 422, "invalid_type"),
    ({"text": "x", "height": [1]}, 422, "invalid_type"),
    ({"text": ["@/etc/passwd"]}, 422, "invalid_type"),
]


@pytest.mark.parametrize(("body", "status", "code"), HOSTILE_TEXT_BODIES)
def test_hostile_text_parameters_are_refused(
    target: Target, body: dict[str, Any], status: int, code: str
) -> None:
    assert outcome(target, post_json(target, body)) == (status, code)


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
        (b'{"text": "' + b"a" * 70_000 + b'"}', 413, "body_too_large"),
        (b'{"text": "x", "size": NaN}', 400, "invalid_json"),
        (b'{"text": "x", "size": 1e999}', 400, "invalid_json"),
        (b'{"text": "x", "size": ' + b"7" * 5000 + b"}", 400, "invalid_json"),
        (b'{"text": "x", "size": -' + b"7" * 5000 + b"}", 400, "invalid_json"),
        (b'{"text": "x", "size": 1' + b"0" * 4000 + b"}", 422, "out_of_range"),
    ],
    ids=[
        "deeply-nested",
        "oversized",
        "nan",
        "infinite",
        "5000-digits",
        "minus-5000-digits",
        "4000-digits",
    ],
)
def test_malformed_json_is_refused(target: Target, content: bytes, status: int, code: str) -> None:
    response = httpx.post(
        f"{target.base}/jobs", content=content, headers={"content-type": "application/json"}
    )
    assert outcome(target, response) == (status, code)


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"ops": json.dumps([{"op": "watermark", "text": "@/etc/passwd"}])}, 422, "unsafe_text"),
        (
            {"ops": json.dumps([{"op": "watermark", "text": "x", "font": "/etc/passwd"}])},
            422,
            "unknown_font",
        ),
        (
            {"ops": json.dumps([{"op": "rotate", "degrees": 45, "background": "url(x)"}])},
            422,
            "invalid_color",
        ),
        ({"ops": json.dumps([{"op": "blur", "radius": float("nan")}])}, 400, "invalid_json"),
        ({"ops": '[{"op": "resize", "width": ' + "9" * 5000 + "}]"}, 400, "invalid_json"),
        ({"ops": "null"}, 422, "invalid_type"),
        ({"ops": '{"op": "grayscale"}'}, 422, "invalid_type"),
        ({"quality": "\u00b2"}, 422, "invalid_type"),
        ({"quality": "9" * 5000}, 422, "invalid_type"),
        ({"quality": "\u0663\u0660"}, 422, "invalid_type"),
        ({"ops": json.dumps([{"op": "resize", "width": -1}])}, 422, "out_of_range"),
        ({"ops": "[" * 3000}, 400, "invalid_json"),
        ({"format": "msl"}, 422, "unknown_format"),
        ({"format": "png:/tmp/x"}, 422, "unknown_format"),
        ({"engine": "imagemagick; rm -rf /"}, 422, "unknown_engine"),
        ({"quality": "-5"}, 422, "invalid_type"),
    ],
)
def test_hostile_image_parameters_are_refused(
    target: Target, fields: dict[str, str], status: int, code: str
) -> None:
    assert outcome(target, post_file(target, valid_png(), "x.png", **fields)) == (status, code)


@pytest.mark.parametrize("wait", ["\u00b2", "\u0661", "9" * 5000, "-1", " 1", "1.5"])
def test_hostile_wait_is_refused(target: Target, wait: str) -> None:
    response = post_json(target, {"text": "x"})
    assert response.status_code == 202
    poll = httpx.get(f"{target.base}{response.headers['location']}", params={"wait": wait})
    assert (poll.status_code, poll.json()["error"]["code"]) == (422, "invalid_parameter")


@pytest.mark.parametrize("quality", ["\u00b2", "9" * 5000])
def test_hostile_query_numbers_are_refused(target: Target, quality: str) -> None:
    response = post_raw(target, valid_png(), "image/png", quality=quality)
    assert outcome(target, response) == (422, "invalid_type")


# --- what the header probe cannot see -----------------------------------------------------


def gif_with_hidden_frame() -> bytes:
    """A 1x1 GIF whose image data hides a 100x100 frame in its second sub-block: the probe
    (and Pillow) skip it as data, ImageMagick's reader resumes parsing inside it."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    hidden = io.BytesIO()
    Image.new("P", (100, 100), 0).save(hidden, "GIF")
    data = hidden.getvalue()
    frame_100 = data[data.index(b"\x2c\x00\x00\x00\x00\x64\x00\x64\x00") : -1]
    one_pixel = b"\x44\x01"  # LZW with 3-bit codes: clear, index 0, end
    frame_1 = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02"
    frame_1 += bytes([len(one_pixel)]) + one_pixel + bytes([len(frame_100)]) + frame_100 + b"\x00"
    return screen + frame_1 + b"\x3b"


def bmp_chain(frames: int, size: int) -> bytes:
    """A 1x1 BMP followed by `frames` RLE-compressed `size`x`size` BMPs: a few hundred KB
    that decode to gigabytes of pixels for a reader that reads on past the first image."""
    first = io.BytesIO()
    Image.new("RGB", (1, 1)).save(first, "BMP")
    row = b"".join(bytes([min(255, size - x), 0]) for x in range(0, size, 255)) + b"\x00\x00"
    pixels = row * size + b"\x00\x01"
    palette = b"\x00" * 1024
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, size, size, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    rle = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette
    chain = bytearray(first.getvalue() + (rle + pixels) * frames)
    struct.pack_into("<I", chain, 2, len(chain))  # the first header claims the whole chain
    return bytes(chain)


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
@pytest.mark.parametrize(
    ("make", "media"),
    [(gif_with_hidden_frame, "image/gif"), (lambda: bmp_chain(6, 4000), "image/bmp")],
    ids=["gif-hidden-frame", "bmp-chain"],
)
def test_frames_the_probe_never_saw_are_never_decoded(
    target: Target, make: Callable[[], bytes], media: str, engine: str
) -> None:
    data = make()
    assert len(data) < 1 << 20
    assert probe_image(data).width == 1 and not probe_image(data).animated
    response = post_raw(target, data, media, engine=engine, format="png")
    assert outcome(target, response) == (200, "done")
    assert decode(target.seen[-1]).size == (1, 1), "the one frame the probe saw, no other"


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
@pytest.mark.parametrize("key", ["Comment", "mvg", "svg:base-uri", "Raw profile type 8bim"])
def test_a_script_in_a_png_text_chunk_is_only_text(target: Target, engine: str, key: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, target.fill(PAYLOADS["mvg-url"]).decode())
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG", pnginfo=info)
    response = post_raw(target, image.getvalue(), engine=engine)
    status, _code = outcome(target, response)
    assert status in (200, 422), "decoded, or refused as the client's fault: never a 500"


# --- last: the worker still works -------------------------------------------------------


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_both_engines_still_render_after_the_suite(target: Target, engine: str) -> None:
    assert outcome(target, post_json(target, {"text": "still fine", "engine": engine})) == (
        200,
        "done",
    )
    ops = json.dumps([{"op": "resize", "width": 16, "height": 16, "fit": "cover"}])
    response = post_file(target, valid_png(), "x.png", ops=ops, engine=engine)
    assert outcome(target, response) == (200, "done")


def test_listener_fixture_counts_connections() -> None:
    # The "no connection" checks above could not fail if the listener never saw one.
    listener = Listener()
    try:
        with socket.create_connection(("127.0.0.1", listener.port)):
            pass
        wait_until(lambda: listener.connections == 1, what="the connection to be counted")
    finally:
        listener.close()
