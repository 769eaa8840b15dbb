"""Text for the whole world: every script drawn with a font that has it, shaped, in bidi order,
wrapped at legal breaks, emoji in colour, and both engines agreeing or saying no.

What can be checked without eyes is: no tofu (each cluster comes from a font whose cmap has
it, and has ink of its own that the whole line keeps), the order of right-to-left ink, joined
Arabic (fewer connected shapes than its letters alone), equal sizes and looks on both engines
or a 422, and lines never wider than `width`.
"""

from __future__ import annotations

import tempfile
import unicodedata
from collections import deque
from pathlib import Path

import pytest
from fontTools.ttLib import TTCollection, TTFont
from PIL import Image
from starlette.testclient import TestClient

from renderq.errors import ErrorCode, InvalidRequest
from renderq.font_coverage import covered_scripts, font_coverage
from renderq.fonts import ALL_FONTS, FALLBACK_FONTS
from renderq.settings import Settings
from renderq.text_request import TextRequest, parse_text_request
from tests.images import dark_pixels, decode, look_difference, on_white
from tests.script_samples import SAMPLES, SHAPED, WORLD_LINE, contact_sheet, render
from tests.test_api import RunWorker, submit
from tests.test_engines import LOOK_TOLERANCE
from worker.layout import TextLayout, layout_text
from worker.text_breaks import grapheme_clusters

SETTINGS = Settings.from_env({})
SIZE = 36


def layout(text: str, **fields: object) -> TextLayout:
    request = TextRequest(text=text, size=SIZE, **fields)  # type: ignore[arg-type]
    return layout_text(request, SETTINGS)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_cluster_comes_from_a_font_that_has_it(name: str) -> None:
    for line in layout(SAMPLES[name]).lines:
        for run in line.runs:
            steering = {0x200D, 0xFE0F}
            missing = [ch for ch in run.text if ord(ch) not in run.face.chars | steering]
            assert missing == [], f"{run.face} lacks {missing}"


def _ink(image: Image.Image) -> int:
    """Pixels that are not the white background (colour emoji are not dark)."""
    return image.width * image.height - on_white(image).histogram()[-1]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_no_tofu_each_cluster_has_ink_the_line_keeps(name: str) -> None:
    text = SAMPLES[name]
    alone = [
        _ink(render("pillow", cluster, SETTINGS, size=SIZE))
        for cluster in grapheme_clusters(text)
        if not cluster.isspace()
    ]
    assert min(alone) > 20, "a cluster drew (next to) nothing"
    whole = _ink(render("pillow", text, SETTINGS, size=SIZE))
    # Joining and conjuncts change the ink a little; an empty box or a blank changes it a lot.
    assert 0.6 * sum(alone) < whole < 1.4 * sum(alone)


def test_a_dejavu_line_falls_back_instead_of_drawing_boxes() -> None:
    faces = {run.face.name for line in layout(WORLD_LINE).lines for run in line.runs}
    assert {"noto-sans-devanagari", "noto-sans-cjk", "noto-color-emoji"} <= faces


@pytest.mark.parametrize(
    ("engine", "long_word", "short_word", "rtl"),
    [
        ("pillow", "بالعالمين", "و", True),
        ("pillow", "שלוםשלום", "ו", True),  # noqa: RUF001 (Hebrew vav, not Latin l)
        ("imagemagick", "שלוםשלום", "ו", True),  # noqa: RUF001 (Hebrew vav, not Latin l)
        ("pillow", "abcdefgh", "i", False),
        ("imagemagick", "abcdefgh", "i", False),
    ],
)
def test_the_first_logical_word_is_on_the_right_in_right_to_left_text(
    engine: str, long_word: str, short_word: str, rtl: bool
) -> None:
    first_long = render(engine, f"{long_word} {short_word}", SETTINGS, size=SIZE)
    first_short = render(engine, f"{short_word} {long_word}", SETTINGS, size=SIZE)
    assert first_long.size == first_short.size
    # The long word's ink pulls the middle of all ink towards wherever the word is drawn:
    # right when it comes first in right-to-left text, left in left-to-right text.
    shift = _ink_middle(first_long) - _ink_middle(first_short)
    assert (shift if rtl else -shift) > 4


def _ink_middle(image: Image.Image) -> float:
    """The mean x of the ink, weighted by its darkness."""
    gray = on_white(image)
    pixels, width = gray.tobytes(), gray.width
    columns = [sum(255 - v for v in pixels[x::width]) for x in range(width)]
    return sum(x * ink for x, ink in enumerate(columns)) / sum(columns)


def test_mixed_direction_line_orders_runs_by_the_bidi_algorithm() -> None:
    line = layout("abc שלום עולם def").lines[0]
    texts = [run.text.strip() for run in line.runs]
    # Left to right on the canvas: the Latin word, the Hebrew words right to left, Latin.
    assert texts == ["abc", "שלום עולם", "def"]
    assert [run.rtl for run in line.runs] == [False, True, False]
    assert [run.x for run in line.runs] == sorted(run.x for run in line.runs)


def test_right_to_left_paragraph_is_aligned_right() -> None:
    laid = layout("שלום\nשלום עולם")  # noqa: RUF001 (Hebrew vav, not Latin l)
    short, long = laid.lines
    assert short.runs[-1].x + short.runs[-1].width == pytest.approx(
        long.runs[-1].x + long.runs[-1].width, abs=1
    )
    assert short.x > long.x


def _components(image: Image.Image) -> int:
    """Connected shapes of dark pixels (8-connected)."""
    gray = on_white(image)
    width = gray.width
    dark = {(i % width, i // width) for i, v in enumerate(gray.tobytes()) if v < 128}
    count = 0
    while dark:
        count += 1
        queue = deque([dark.pop()])
        while queue:
            x, y = queue.popleft()
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    if (x + dx, y + dy) in dark:
                        dark.remove((x + dx, y + dy))
                        queue.append((x + dx, y + dy))
    return count


def test_arabic_letters_are_joined() -> None:
    word = "بالعالمين"
    joined = _components(render("pillow", word, SETTINGS, size=48))
    alone = sum(_components(render("pillow", letter, SETTINGS, size=48)) for letter in word)
    assert joined < alone - 3


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_engines_agree_or_imagemagick_refuses(name: str) -> None:
    text = SAMPLES[name]
    pillow = render("pillow", text, SETTINGS, size=SIZE)
    if name in SHAPED:
        with pytest.raises(InvalidRequest) as refused:
            render("imagemagick", text, SETTINGS, size=SIZE)
        assert refused.value.code is ErrorCode.UNSUPPORTED_SCRIPT
        assert refused.value.field == "text"
        return
    magick = render("imagemagick", text, SETTINGS, size=SIZE)
    assert pillow.size == magick.size
    assert look_difference(pillow, magick, SIZE // 8) < LOOK_TOLERANCE


def test_imagemagick_refusal_names_the_script() -> None:
    with pytest.raises(InvalidRequest) as refused:
        render("imagemagick", WORLD_LINE, SETTINGS, size=SIZE)
    assert "Arabic" in refused.value.message
    assert "Devanagari" in refused.value.message
    with pytest.raises(InvalidRequest) as refused:
        render("imagemagick", "नमस्ते", SETTINGS, size=SIZE)
    assert "Devanagari" in refused.value.message


@pytest.mark.parametrize("engine", ["pillow", "imagemagick"])
def test_emoji_are_drawn_in_colour(engine: str) -> None:
    image = render(engine, "😀", SETTINGS, size=SIZE).convert("RGB")
    pixels = image.tobytes()
    rgb = zip(pixels[0::3], pixels[1::3], pixels[2::3], strict=True)
    yellow = sum(1 for r, g, b in rgb if r > 200 and g > 150 and b < 100)
    assert yellow > 100
    # Scaled from the 109 px strike to the size asked for.
    assert SIZE < image.height < 2 * SIZE


@pytest.mark.parametrize(
    ("text", "width"),
    [
        (SAMPLES["Chinese"] * 6, 160),
        (SAMPLES["Devanagari"] * 4, 180),
        (SAMPLES["Arabic"] + " " + SAMPLES["Arabic"], 150),
        ("Ĥéllo wörld, " * 5, 200),
        (SAMPLES["Korean"] * 3, 170),
        # Thai has no spaces: ICU finds its words by dictionary.
        (SAMPLES["Thai"] * 3, 200),
    ],
)
def test_wrapping_never_exceeds_the_width(text: str, width: int) -> None:
    laid = layout(text, width=width)
    padding = round(SIZE * 0.25)
    assert len(laid.lines) > 1
    for line in laid.lines:
        assert line.text == "".join(grapheme_clusters(line.text))
        assert unicodedata.category(line.text[0]) not in {"Mn", "Mc"}, "broke inside a cluster"
        right = max(run.x + run.width for run in line.runs)
        assert min(run.x for run in line.runs) >= padding
        assert right <= width - padding + 1
    image = render("pillow", text, SETTINGS, size=SIZE, width=width)
    assert image.width == width
    assert dark_pixels(image, (width - padding + 2, 0, width, image.height)) == 0


def test_cjk_breaks_between_characters() -> None:
    lines = layout("你好世界你好世界你好世界", width=120).lines
    assert len(lines) >= 3
    assert "".join(line.text for line in lines) == "你好世界你好世界你好世界"


def test_a_character_no_font_has_is_refused_or_replaced() -> None:
    with pytest.raises(InvalidRequest) as refused:
        layout("ok \U0010fffd")
    assert refused.value.code is ErrorCode.UNSUPPORTED_CHARACTER
    assert "U+10FFFD" in refused.value.message
    replaced = layout("ok \U0010fffd", on_missing_glyph="replace")
    assert replaced.lines[0].text == "ok \ufffd"


def test_on_missing_glyph_is_a_declared_field() -> None:
    request = parse_text_request({"text": "x", "on_missing_glyph": "replace"}, SETTINGS)
    assert request.on_missing_glyph == "replace"
    assert parse_text_request(request.to_json(), SETTINGS) == request
    with pytest.raises(InvalidRequest) as refused:
        parse_text_request({"text": "x", "on_missing_glyph": "box"}, SETTINGS)
    assert refused.value.code is ErrorCode.INVALID_PARAMETER


def test_fallback_fonts_cover_the_worlds_scripts() -> None:
    covered = {
        script
        for name in FALLBACK_FONTS
        for script in covered_scripts(font_coverage(SETTINGS.font_dir, name).chars)
    }
    wanted = {"Latin", "Greek", "Cyrillic", "Arabic", "Hebrew", "Devanagari", "Bengali"}
    wanted |= {"Tamil", "Telugu", "Thai", "Han", "Hiragana", "Katakana", "Hangul", "Emoji"}
    assert wanted <= covered
    assert font_coverage(SETTINGS.font_dir, "noto-color-emoji").strike == 109
    # Every character of every shipped font is reachable by fallback: no box where one has it.
    shipped = set().union(*(font_coverage(SETTINGS.font_dir, name).chars for name in ALL_FONTS))
    chain = set().union(*(font_coverage(SETTINGS.font_dir, name).chars for name in FALLBACK_FONTS))
    assert shipped == chain


def test_contact_sheet_of_every_script_on_both_engines() -> None:
    sheet = contact_sheet(SETTINGS)
    artifacts = Path(tempfile.gettempdir()) / "renderq-test-artifacts"
    artifacts.mkdir(exist_ok=True)
    sheet.save(artifacts / "scripts.png")
    assert sheet.height > len(SAMPLES) * SIZE
    assert dark_pixels(sheet) > 10000


def test_get_fonts_lists_families_with_their_scripts(client: TestClient) -> None:
    body = client.get("/fonts").json()
    assert "dejavu-sans" in body["fonts"]
    scripts = {family["name"]: family["scripts"] for family in body["families"]}
    assert "Arabic" in scripts["noto-sans-arabic"]
    assert {"Han", "Hiragana", "Hangul"} <= set(scripts["noto-sans-cjk"])
    assert scripts["noto-color-emoji"] == ["Emoji"]
    assert body["fallback"] == list(FALLBACK_FONTS)


def test_the_world_line_through_the_service(client: TestClient, run_worker: RunWorker) -> None:
    bodies = [{"text": WORLD_LINE, "size": SIZE, "engine": e} for e in ("pillow", "imagemagick")]
    pillow_job, magick_job = (submit(client, body) for body in bodies)
    run_worker()
    drawn = client.get(f"/jobs/{pillow_job}")
    assert drawn.status_code == 200
    assert _ink(decode(drawn.content)) > 1000
    refused = client.get(f"/jobs/{magick_job}")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "unsupported_script"
    assert "Arabic" in error["message"]


@pytest.mark.parametrize("name", ["noto-sans-cjk", "noto-color-emoji", "dejavu-sans"])
def test_coverage_read_as_ranges_is_the_cmap_fonttools_reads(name: str) -> None:
    face = ALL_FONTS[name]
    path = f"{SETTINGS.font_dir}/{face.path}"
    font = TTCollection(path).fonts[face.index] if path.endswith(".ttc") else TTFont(path)
    assert font_coverage(SETTINGS.font_dir, name).chars == frozenset(font.getBestCmap())


def test_a_word_drawn_alone_is_still_drawn_literally() -> None:
    # ImageMagick draws word by word: a word such as `@/etc/hostname` (allowed past the
    # text's start) must be drawn as itself, never read as a file.
    text = "x @/etc/hostname %"
    pillow, magick = (
        render(engine, text, SETTINGS, size=30) for engine in ("pillow", "imagemagick")
    )
    assert look_difference(pillow, magick, 4) < LOOK_TOLERANCE
