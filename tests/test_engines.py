"""Both engines draw real text, at the same size, with a comparable look."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from renderq.errors import ErrorCode, InvalidRequest
from renderq.settings import Settings
from renderq.text_request import TextRequest, parse_text_request
from tests.images import dark_pixels, decode, look_difference
from worker.engines import RENDERERS
from worker.layout import layout_text

SETTINGS = Settings.from_env({})
ENGINES = sorted(RENDERERS)

# The engines differ in antialiasing and hinting (a glyph may sit a pixel apart), so their
# look is compared at stroke scale: measured 0.06 to 0.20 on these cases, while text against
# an empty canvas is 1.0 and a one-line shift of the text scores far above the tolerance.
LOOK_TOLERANCE = 0.3


def render(engine: str, **body: Any) -> Image.Image:
    request = parse_text_request({"engine": engine, **body}, SETTINGS)
    return decode(RENDERERS[engine].render_text(layout_text(request, SETTINGS), request))


@pytest.mark.parametrize("engine", ENGINES)
def test_text_is_drawn_where_the_layout_puts_it(engine: str) -> None:
    image = render(engine, text="Hello", size=48)
    request = parse_text_request({"text": "Hello", "size": 48}, SETTINGS)
    layout = layout_text(request, SETTINGS)
    line = layout.lines[0]
    text_box = (line.x, line.top, image.width - line.x, line.top + layout.ascent)
    assert dark_pixels(image, text_box) > 300
    # The padding all round stays background.
    assert dark_pixels(image, (0, 0, image.width, line.top)) == 0
    assert dark_pixels(image, (0, 0, line.x - 2, image.height)) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"text": "Hello, renderq!", "size": 40},
        {"text": "two\nlines and tabs\there", "size": 24, "font": "dejavu-serif-bold"},
        {"text": "wrapping " * 12, "size": 20, "width": 200},
        {"text": "boxed", "width": 300, "height": 120, "color": "#336699"},
        {"text": "Ünïcödé ÆØÅ ß €", "size": 30, "font": "dejavu-sans-mono"},
    ],
)
def test_engines_agree_on_size_and_look(body: dict[str, Any]) -> None:
    pillow, magick = (render(engine, **body) for engine in ("pillow", "imagemagick"))
    assert pillow.size == magick.size
    stroke = body.get("size", 32) // 8
    assert look_difference(pillow, magick, stroke) < LOOK_TOLERANCE


def test_look_difference_notices_misplaced_text() -> None:
    pillow = render("pillow", text="Hello, renderq!", size=40)
    shifted = Image.new("RGBA", pillow.size, "white")
    shifted.paste(pillow.crop((0, 0, pillow.width, pillow.height - 20)), (0, 20))
    assert look_difference(pillow, shifted, 5) > LOOK_TOLERANCE


@pytest.mark.parametrize("engine", ENGINES)
def test_width_wraps_and_height_fits(engine: str) -> None:
    body = {"text": "a few words that must wrap", "size": 20, "width": 120}
    layout = layout_text(parse_text_request(body, SETTINGS), SETTINGS)
    assert [line.text for line in layout.lines] == ["a few", "words that", "must wrap"]
    image = render(engine, **body)
    assert image.size == (120, layout.height)
    one_line = render(engine, text="a few", size=20)
    assert image.height - one_line.height == 2 * (layout.lines[1].top - layout.lines[0].top)


@pytest.mark.parametrize("engine", ENGINES)
def test_transparent_background_keeps_alpha(engine: str) -> None:
    image = render(engine, text="alpha", background="transparent", size=40).convert("RGBA")
    assert image.getpixel((0, 0)) == (0, 0, 0, 0)
    alphas = image.getchannel("A").histogram()
    assert alphas[255] > 50, "the glyphs are opaque"


@pytest.mark.parametrize("engine", ENGINES)
def test_jpeg_flattens_transparency_onto_white(engine: str) -> None:
    image = render(engine, text="jpeg", background="transparent", format="jpeg")
    assert image.format == "JPEG"
    assert image.mode in {"RGB", "L"}, "no alpha channel"
    corner = image.convert("RGB").getpixel((0, 0))
    assert isinstance(corner, tuple)
    assert min(corner) > 240


@pytest.mark.parametrize("engine", ENGINES)
def test_colors_are_applied(engine: str) -> None:
    image = render(engine, text="█", size=60, color="#ff0000", background="#0000ff").convert("RGB")
    colors = {color for _, color in image.getcolors(maxcolors=100000) or []}
    assert (255, 0, 0) in colors
    assert (0, 0, 255) in colors


@pytest.mark.parametrize("engine", ENGINES)
def test_imagemagick_syntax_in_text_is_drawn_literally(engine: str) -> None:
    # The front refuses such text, but should it get through, the engines draw `@file`,
    # percent escapes and quotes as plain text, never interpreting them.
    request = TextRequest(text="@/etc/passwd %w %[exif:*] 'q\"", engine=engine, size=20)
    literal = decode(RENDERERS[engine].render_text(layout_text(request, SETTINGS), request))
    assert dark_pixels(literal) > 100
    passwd_line = render(engine, text="root:x:0:0:root:/root:/bin/bash", size=20)
    assert literal.size != passwd_line.size


def test_text_larger_than_the_limits_is_refused() -> None:
    request = parse_text_request({"text": "W" * 400, "size": 200}, SETTINGS)
    with pytest.raises(InvalidRequest) as caught:
        layout_text(request, SETTINGS)
    assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE
    many_lines = parse_text_request({"text": "a\n" * 150, "size": 6}, SETTINGS)
    with pytest.raises(InvalidRequest) as caught:
        layout_text(many_lines, SETTINGS)
    assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE
