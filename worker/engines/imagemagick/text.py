"""The ImageMagick engine, through Wand: text drawing and encoding.

Text goes to ImageMagick only as a drawing primitive's string with explicit coordinates, and
colors only as numbers built here: no client string is parsed by ImageMagick.
"""

from __future__ import annotations

import io
import unicodedata
from typing import Final

from fontTools.unicodedata import script, script_name
from wand.color import Color
from wand.drawing import Drawing
from wand.image import Image

from renderq.colors import RGBA
from renderq.errors import ErrorCode, InvalidRequest
from renderq.text_request import TextRequest
from renderq.vocabulary import OPAQUE_FORMATS
from worker.layout import TextLayout, TextRun, cluster_positions, emoji_layer

# Scripts drawn right with one glyph per character: no joining, no reordering within a
# cluster, no marks to place (a right-to-left run is drawn cluster by cluster in visual
# order). Common and inherited characters (spaces, digits, punctuation, Latin accents) too.
UNSHAPED_SCRIPTS: Final = frozenset(
    {"Latn", "Grek", "Cyrl", "Armn", "Geor", "Hebr", "Ethi", "Hani", "Hira", "Kana", "Hang",
     "Bopo", "Zyyy", "Zinh"}
)  # fmt: skip
# The most clusters drawn in one call (see `_draw_run`).
_WORD_CLUSTERS: Final = 8


def wand_color(rgba: RGBA) -> Color:
    r, g, b, a = rgba
    return Color(f"srgba({r},{g},{b},{a / 255:.4f})")


def draw_text(layout: TextLayout, color: RGBA, background: RGBA) -> Image:
    """The laid-out text as a new Wand image; the caller closes it. Each word is drawn where
    the shared layout places it, so the engines agree; text ImageMagick cannot draw
    correctly is refused first (`unsupported_script`)."""
    refuse_unshaped(layout)
    image = Image(width=layout.width, height=layout.height, background=wand_color(background))
    with Drawing() as draw:
        draw.font_size = layout.size
        draw.fill_color = wand_color(color)
        draw.text_antialias = True
        for line in layout.lines:
            for run in line.runs:
                if not run.face.strike:
                    _draw_run(draw, run, line.baseline, layout.size)
        draw(image)
    for line in layout.lines:
        for run in line.runs:
            if run.face.strike:
                _composite_emoji(image, run, line.baseline, layout.size)
    return image


def _draw_run(draw: Drawing, run: TextRun, baseline: int, size: int) -> None:
    """Each word of the run (in visual order) at the x the layout gave its first cluster.
    A word is one call, as each call costs ImageMagick a FreeType face; within it ImageMagick
    advances by its own metrics, a fraction of a pixel a glyph off the layout's, so a word
    (of CJK, which has no spaces, too) is cut after `_WORD_CLUSTERS` clusters."""
    # ImageMagick 6 opens a collection's first face, the one the layout measured.
    draw.font = run.face.path
    word: list[str] = []
    start = 0
    for cluster, x in [*cluster_positions(run, size), (" ", 0)]:
        if word and (cluster.isspace() or len(word) == _WORD_CLUSTERS):
            draw.text(start, baseline, "".join(word))
            word = []
        if not cluster.isspace():
            start = x if not word else start
            word.append(cluster)


def _composite_emoji(image: Image, run: TextRun, baseline: int, size: int) -> None:
    """The emoji font's strike (a bitmap ImageMagick's FreeType cannot load in colour),
    scaled by ImageMagick and laid over the text."""
    emoji = emoji_layer(run, size, baseline)
    png = io.BytesIO()
    emoji.strike.save(png, format="PNG")
    with Image(blob=png.getvalue(), format="png") as layer:
        layer.resize(*emoji.scaled, filter="lanczos")
        left, top = emoji.at
        image.composite(layer, left=left, top=top, operator="over")


def refuse_unshaped(layout: TextLayout) -> None:
    """ImageMagick 6 here has no raqm: it draws one glyph per character, unjoined, unordered,
    marks unplaced. Scripts that need more than that are refused, naming them, before
    anything is drawn: never a wrong image."""
    refused = sorted(
        {
            script_name(script(ch))
            for line in layout.lines
            for run in line.runs
            if not run.face.strike
            for ch in run.text
            if script(ch) not in UNSHAPED_SCRIPTS or (run.rtl and unicodedata.category(ch) == "Mn")
        }
    )
    if refused:
        raise InvalidRequest(
            ErrorCode.UNSUPPORTED_SCRIPT,
            f"the imagemagick engine cannot draw {' or '.join(refused)} text correctly (it has "
            "no shaping: letters would be unjoined or out of order); use the pillow engine",
            "text",
        )


def render_text(layout: TextLayout, request: TextRequest) -> bytes:
    with draw_text(layout, request.color, request.background) as image:
        image.strip()
        return encode(image, request.format)


def encode(image: Image, fmt: str, quality: int | None = None) -> bytes:
    """Encode `image` in 8 bits; formats without alpha get it flattened onto white."""
    if fmt in OPAQUE_FORMATS:
        image.background_color = Color("white")
        image.alpha_channel = "remove"
    if quality is not None:
        image.compression_quality = quality
    image.depth = 8
    image.format = fmt
    blob: bytes = image.make_blob()
    return blob
