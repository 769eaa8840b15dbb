"""A line of text in each writing system renderq draws, and the contact sheet made of them:
every sample on both engines, side by side (`python -m bench.scripts_sheet`, the test suite).
"""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageDraw, ImageFont

from renderq.errors import InvalidRequest
from renderq.settings import Settings
from renderq.text_request import TextRequest
from tests.images import decode
from worker.engines import RENDERERS
from worker.layout import layout_text

# The line: Arabic, Devanagari, Chinese, an emoji and accented Latin in one paragraph.
WORLD_LINE: Final = "مرحبا بالعالم — नमस्ते — 你好 — 😀 — Ĥéllo"

SAMPLES: Final[dict[str, str]] = {
    "Arabic": "مرحبا بالعالم",
    "Hebrew": "שלום עולם",
    "Devanagari": "नमस्ते दुनिया",
    "Bengali": "নমস্কার বিশ্ব",
    "Tamil": "வணக்கம் உலகம்",
    "Thai": "สวัสดีชาวโลก",
    "Chinese": "你好，世界",  # noqa: RUF001 (the script's own letters)
    "Japanese": "こんにちは世界",
    "Korean": "안녕하세요 세계",
    "Cyrillic": "Привет, мир",
    "Greek": "Γειά σου κόσμε",  # noqa: RUF001 (the script's own letters)
    "Emoji": "😀 👍🏽 🇫🇷 ❤️",
    "Mixed direction": "abc שלום (1) def",
    "World line": WORLD_LINE,
}

# The scripts ImageMagick 6 cannot draw without shaping: it answers unsupported_script.
SHAPED: Final = frozenset({"Arabic", "Devanagari", "Bengali", "Tamil", "Thai", "World line"})

_LABEL_WIDTH: Final = 170
_GAP: Final = 12


def render(engine: str, text: str, settings: Settings, **fields: object) -> Image.Image:
    """The text drawn by `engine`, decoded; raises what the engine refuses with."""
    request = TextRequest(text=text, engine=engine, **fields)  # type: ignore[arg-type]
    return decode(RENDERERS[engine].render_text(layout_text(request, settings), request))


def contact_sheet(settings: Settings, size: int = 32) -> Image.Image:
    """A row per sample: its name, Pillow's image, ImageMagick's image or its refusal."""
    rows = []
    for name, text in SAMPLES.items():
        cells: list[Image.Image | str] = []
        for engine in ("pillow", "imagemagick"):
            try:
                cells.append(render(engine, text, settings, size=size).convert("RGB"))
            except InvalidRequest as refused:
                cells.append(f"422 {refused.code}")
        rows.append((name, cells))
    column = max(cell.width for _, cells in rows for cell in cells if isinstance(cell, Image.Image))
    height = sum(max(_height(c, size) for c in cells) + _GAP for _, cells in rows) + 40
    sheet = Image.new("RGB", (_LABEL_WIDTH + 2 * (column + _GAP), height), "white")
    draw = ImageDraw.Draw(sheet)
    label = ImageFont.truetype(f"{settings.font_dir}/truetype/dejavu/DejaVuSans.ttf", 16)
    for i, title in enumerate(("pillow", "imagemagick")):
        draw.text((_LABEL_WIDTH + i * (column + _GAP), 10), title, font=label, fill="black")
    y = 40
    for name, cells in rows:
        draw.text((8, y + 10), name, font=label, fill="black")
        for i, cell in enumerate(cells):
            x = _LABEL_WIDTH + i * (column + _GAP)
            if isinstance(cell, Image.Image):
                sheet.paste(cell, (x, y))
            else:
                draw.text((x + 8, y + 10), cell, font=label, fill="firebrick")
        y += max(_height(c, size) for c in cells) + _GAP
    return sheet


def _height(cell: Image.Image | str, size: int) -> int:
    return cell.height if isinstance(cell, Image.Image) else size
