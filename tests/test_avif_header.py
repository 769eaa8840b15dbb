"""The AVIF header probe: hand-built box structures, hostile lengths and counts, orientation.

Real AVIFs made by Pillow are in `test_image_header`'s samples (and its truncation and
mutation tests); here each file is built box by box, so each rule is tried alone.
"""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from renderq.errors import ErrorCode, InvalidRequest, UnsupportedMediaType
from renderq.image_header import ImageHeader, probe_image
from tests.test_image_header import assert_invalid, picture, refusal


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, body: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags) + body)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", struct.pack(">II", width, height))


def avif(
    properties: list[bytes] | None = None,
    *,
    brand: bytes = b"avif",
    item_type: bytes = b"av01",
    links: list[int] | None = None,
    ipma_count: int = 1,
    meta_extra: bytes = b"",
    top_extra: bytes = b"",
) -> bytes:
    """A still AVIF's boxes: item 1, the primary, tied to `properties` (all, unless `links`
    names their 1-based indices), with a token of coded data."""
    properties = [ispe(64, 48)] if properties is None else properties
    links = list(range(1, len(properties) + 1)) if links is None else links
    ftyp = box(b"ftyp", brand + b"\x00" * 4 + brand + b"mif1miaf")
    hdlr = full_box(b"hdlr", b"\x00" * 4 + b"pict" + b"\x00" * 13)
    pitm = full_box(b"pitm", struct.pack(">H", 1))
    infe = full_box(b"infe", struct.pack(">HH4s", 1, 0, item_type) + b"\x00", version=2)
    iinf = full_box(b"iinf", struct.pack(">H", 1) + infe)
    ipma = full_box(b"ipma", struct.pack(">IHB", ipma_count, 1, len(links)) + bytes(links))
    iprp = box(b"iprp", box(b"ipco", b"".join(properties)) + ipma)
    meta = full_box(b"meta", hdlr + pitm + iinf + iprp + meta_extra)
    return ftyp + meta + box(b"mdat", b"\x00" * 16) + top_extra


def pillow_avif(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "AVIF", **options)
    return out.getvalue()


def test_hand_built_avif_is_read() -> None:
    assert probe_image(avif()) == ImageHeader("avif", 64, 48, False)
    # A brand listed only among the compatible ones counts; a 64-bit box size is read.
    mixed = avif()[:8] + b"mif1" + avif()[12:]
    assert probe_image(mixed).format == "avif"
    big = avif()
    mdat = big.index(b"mdat") - 4
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 16) + b"\x00" * 16
    assert probe_image(big[:mdat] + large).width == 64


def test_huge_ispe_is_reported_for_the_limits_to_judge() -> None:
    header = probe_image(avif([ispe(0xFFFFFFFF, 100_000)]))
    assert (header.width, header.height) == (0xFFFFFFFF, 100_000)


@pytest.mark.parametrize(
    "data",
    [
        avif([]),  # no ispe
        avif([ispe(0, 48)]),
        avif([ispe(64, 48), ispe(64, 48)]),  # two sizes: which one would a decoder use?
        avif([full_box(b"ispe", b"\x00\x00")]),  # an ispe cut short
        avif(links=[2]),  # a property index past the list
        avif(item_type=b"hvc1"),  # the primary image is HEVC: not AVIF's codec
        avif([ispe(64, 48), full_box(b"clap", b"\x00" * 32)]),
        avif([ispe(64, 48), box(b"imir", b"\x00"), box(b"irot", b"\x01")]),
        avif(ipma_count=0xFFFFFFFF),  # four billion associations announced
        avif(ipma_count=2),  # a second entry past the end of its box
        avif(meta_extra=box(b"free", b"") * 5000),  # a walk of thousands of boxes
        avif(top_extra=struct.pack(">I4s", 4, b"free")),  # a length shorter than its header
        avif(top_extra=struct.pack(">I4s", 1000, b"free")),  # a box past the end of the data
        avif(top_extra=struct.pack(">I4sQ", 1, b"free", 2**64 - 1)),  # a 64-bit overflow
        avif()[:-1],  # mdat cut short
        avif()[:60],  # cut inside meta
        avif()[:10],  # cut inside the major brand
        box(b"ftyp", b"avif\x00\x00\x00\x00avif") + box(b"mdat", b""),  # no meta at all
    ],
    ids=[
        "no-ispe",
        "zero-width",
        "two-ispe",
        "short-ispe",
        "index-out-of-range",
        "hevc-item",
        "clap",
        "imir-before-irot",
        "huge-ipma-count",
        "ipma-overrun",
        "many-tiny-boxes",
        "box-shorter-than-header",
        "box-past-the-end",
        "largesize-overflow",
        "cut-in-mdat",
        "cut-in-meta",
        "cut-in-brand",
        "no-meta",
    ],
)
def test_broken_avif_is_invalid(data: bytes) -> None:
    assert_invalid(data)


@pytest.mark.parametrize(
    "data",
    [avif(brand=b"avis"), avif(top_extra=box(b"moov", b""))],
    ids=["avis-brand", "moov-box"],
)
def test_image_sequences_are_refused_as_animated(data: bytes) -> None:
    error = refusal(data)
    assert isinstance(error, InvalidRequest)
    assert (error.code, error.field) == (ErrorCode.ANIMATED_IMAGE, "file")


def test_heic_is_not_avif() -> None:
    heic = avif(brand=b"heic")
    error = refusal(heic)
    assert isinstance(error, UnsupportedMediaType)
    assert error.code == ErrorCode.UNSUPPORTED_IMAGE_FORMAT


@pytest.mark.parametrize("orientation", range(1, 9))
def test_rotation_and_mirror_read_as_libavif_reads_them(orientation: int) -> None:
    """Pillow writes an EXIF orientation as irot and imir and reads them back as one: the
    probe must name the same orientation, and the upright size with it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pillow_avif(picture((30, 20)), exif=exif)
    header = probe_image(data)
    with Image.open(io.BytesIO(data)) as image:
        assert header.orientation == image.getexif().get(0x0112, 1) == orientation
    assert header.upright_size == ((20, 30) if orientation >= 5 else (30, 20))


def test_alpha_plane_is_found_through_its_auxiliary_item() -> None:
    opaque = pillow_avif(picture((30, 20)))
    see_through = picture((30, 20), "RGBA")
    see_through.putalpha(100)
    assert not probe_image(opaque).alpha_plane
    assert probe_image(pillow_avif(see_through)).alpha_plane
