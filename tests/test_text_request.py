"""The text request contract: what is accepted, and the code every refusal carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from renderq.colors import parse_color
from renderq.errors import ErrorCode, InvalidRequest
from renderq.settings import Settings, SettingsError
from renderq.text_request import TextRequest, parse_text_request

SETTINGS = Settings.from_env({})


def test_defaults_fill_every_optional_field() -> None:
    request = parse_text_request({"text": "hi"}, SETTINGS)
    assert request == TextRequest(text="hi")


def test_canonical_form_parses_back_to_the_same_request() -> None:
    body = {
        "text": "two\nlines",
        "engine": "imagemagick",
        "font": "dejavu-serif-bold",
        "size": 48,
        "color": "#f00",
        "background": "transparent",
        "width": 300,
        "height": 200,
        "format": "webp",
    }
    request = parse_text_request(body, SETTINGS)
    assert request.color == (255, 0, 0, 255)
    assert request.background == (0, 0, 0, 0)
    assert parse_text_request(request.to_json(), SETTINGS) == request


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, ErrorCode.MISSING_FIELD, "text"),
        ({"text": "   "}, ErrorCode.INVALID_TEXT, "text"),
        ({"text": "a\x00b"}, ErrorCode.INVALID_TEXT, "text"),
        ({"text": "x" * 2001}, ErrorCode.TEXT_TOO_LONG, "text"),
        ({"text": 5}, ErrorCode.INVALID_TYPE, "text"),
        ({"text": "hi", "colour": "red"}, ErrorCode.UNKNOWN_FIELD, "colour"),
        ({"text": "hi", "engine": "gd"}, ErrorCode.UNKNOWN_ENGINE, "engine"),
        ({"text": "hi", "font": "/etc/passwd"}, ErrorCode.UNKNOWN_FONT, "font"),
        ({"text": "hi", "font": "DejaVuSans.ttf"}, ErrorCode.UNKNOWN_FONT, "font"),
        ({"text": "hi", "format": "mvg"}, ErrorCode.UNKNOWN_FORMAT, "format"),
        ({"text": "hi", "format": "png:/tmp/x"}, ErrorCode.UNKNOWN_FORMAT, "format"),
        ({"text": "hi", "color": "url(http://x/)"}, ErrorCode.INVALID_COLOR, "color"),
        ({"text": "hi", "color": "#12"}, ErrorCode.INVALID_COLOR, "color"),
        ({"text": "hi", "color": "transparent"}, ErrorCode.INVALID_COLOR, "color"),
        ({"text": "hi", "background": "red'; rm -rf /"}, ErrorCode.INVALID_COLOR, "background"),
        ({"text": "hi", "size": 0}, ErrorCode.OUT_OF_RANGE, "size"),
        ({"text": "hi", "size": 257}, ErrorCode.OUT_OF_RANGE, "size"),
        ({"text": "hi", "size": "12"}, ErrorCode.INVALID_TYPE, "size"),
        ({"text": "hi", "size": True}, ErrorCode.INVALID_TYPE, "size"),
        ({"text": "hi", "size": 12.5}, ErrorCode.INVALID_TYPE, "size"),
        ({"text": "hi", "width": -1}, ErrorCode.OUT_OF_RANGE, "width"),
        ({"text": "hi", "height": 10**12}, ErrorCode.OUT_OF_RANGE, "height"),
        ({"text": "hi", "width": 4096, "height": 4096}, ErrorCode.OUT_OF_RANGE, "width"),
    ],
)
def test_refusals_name_their_code_and_field(
    body: dict[str, Any], code: ErrorCode, field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_text_request(body, SETTINGS)
    assert caught.value.code is code
    assert caught.value.field == field
    assert caught.value.status == 422


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_text_request(body, SETTINGS)
    assert caught.value.code is ErrorCode.INVALID_TYPE


@pytest.mark.parametrize(
    ("text", "rgba"),
    [
        ("#abc", (0xAA, 0xBB, 0xCC, 255)),
        ("#0a0b0c", (10, 11, 12, 255)),
        ("#0a0b0c80", (10, 11, 12, 128)),
        ("White", (255, 255, 255, 255)),
        ("rgb(1,2,3)", None),
        ("#ggg", None),
        ("", None),
    ],
)
def test_color_grammar(text: str, rgba: tuple[int, int, int, int] | None) -> None:
    assert parse_color(text) == rgba


def test_settings_read_from_the_mapping_given() -> None:
    settings = Settings.from_env({"PORT": "9000", "RENDERQ_MAX_TEXT_LENGTH": "10"})
    assert settings.port == 9000
    assert settings.max_text_length == 10
    with pytest.raises(InvalidRequest):
        parse_text_request({"text": "eleven char"}, settings)


@pytest.mark.parametrize("raw", ["many", "-1", "1.5"])
def test_bad_settings_name_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="RENDERQ_RESULT_TTL"):
        Settings.from_env({"RENDERQ_RESULT_TTL": raw})


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name, _, _ in Settings.documented() if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    "text",
    [
        "@/etc/passwd",
        "  @secret",
        "label:@/etc/passwd",
        "caption:hello",
        "msl:/tmp/x.msl",
        "EPHEMERAL:/tmp/x",
        "text:/etc/hosts",
        "https://127.0.0.1/",
        "size %w x %h",
        "%[exif:*]",
    ],
)
def test_imagemagick_syntax_in_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_text_request({"text": text}, SETTINGS)
    assert caught.value.code is ErrorCode.UNSAFE_TEXT
    assert caught.value.field == "text"


@pytest.mark.parametrize("text", ["100% sure", "e-mail me @ home", "Note: hi", "50 % off"])
def test_ordinary_text_that_resembles_it_is_accepted(text: str) -> None:
    assert parse_text_request({"text": text}, SETTINGS).text == text
