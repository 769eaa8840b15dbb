"""The font allowlist: clients name a font, never a path.

The faces come from Debian's fonts-dejavu-core, fonts-noto-core, fonts-noto-cjk and
fonts-noto-color-emoji, so the set is the same on every machine that ran the set-up. A
character the requested font lacks is drawn with the first font of `FALLBACK_FONTS` that has
it, as browsers do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class FontFile:
    """A face: its file under the font directory, and its index in a collection (.ttc)."""

    path: str
    index: int = 0


DEFAULT_FONT: Final = "dejavu-sans"

_DEJAVU: Final = "truetype/dejavu"
_NOTO: Final = "truetype/noto"
_CJK: Final = "opentype/noto"

# Noto Sans for each script it is written in; `noto-sans-<script>` names its Regular face.
_NOTO_SCRIPTS: Final = (
    "arabic", "armenian", "bengali", "devanagari", "ethiopic", "georgian", "gujarati",
    "gurmukhi", "hebrew", "kannada", "khmer", "lao", "malayalam", "myanmar", "oriya",
    "sinhala", "symbols", "symbols2", "tamil", "telugu", "thaana", "thai",
)  # fmt: skip

# What a request may name. The CJK collections hold one face per region; ImageMagick 6 opens
# only a collection's first face (Japanese), so both engines draw that one.
FONT_FILES: Final[dict[str, FontFile]] = {
    "dejavu-sans": FontFile(f"{_DEJAVU}/DejaVuSans.ttf"),
    "dejavu-sans-bold": FontFile(f"{_DEJAVU}/DejaVuSans-Bold.ttf"),
    "dejavu-sans-mono": FontFile(f"{_DEJAVU}/DejaVuSansMono.ttf"),
    "dejavu-sans-mono-bold": FontFile(f"{_DEJAVU}/DejaVuSansMono-Bold.ttf"),
    "dejavu-serif": FontFile(f"{_DEJAVU}/DejaVuSerif.ttf"),
    "dejavu-serif-bold": FontFile(f"{_DEJAVU}/DejaVuSerif-Bold.ttf"),
    "noto-sans": FontFile(f"{_NOTO}/NotoSans-Regular.ttf"),
    "noto-sans-bold": FontFile(f"{_NOTO}/NotoSans-Bold.ttf"),
    "noto-serif": FontFile(f"{_NOTO}/NotoSerif-Regular.ttf"),
    "noto-serif-bold": FontFile(f"{_NOTO}/NotoSerif-Bold.ttf"),
    "noto-naskh-arabic": FontFile(f"{_NOTO}/NotoNaskhArabic-Regular.ttf"),
    **{
        f"noto-sans-{script}": FontFile(f"{_NOTO}/NotoSans{script.title()}-Regular.ttf")
        for script in _NOTO_SCRIPTS
    },
    "noto-sans-cjk": FontFile(f"{_CJK}/NotoSansCJK-Regular.ttc"),
    "noto-sans-cjk-bold": FontFile(f"{_CJK}/NotoSansCJK-Bold.ttc"),
    "noto-serif-cjk": FontFile(f"{_CJK}/NotoSerifCJK-Regular.ttc"),
}

# Colour emoji: a bitmap font, drawn at its one strike and scaled. Only reached by fallback:
# its digits and `#` are keycap emoji, not text.
EMOJI_FONT: Final = "noto-color-emoji"
ALL_FONTS: Final[dict[str, FontFile]] = {
    **FONT_FILES,
    EMOJI_FONT: FontFile(f"{_NOTO}/NotoColorEmoji.ttf"),
}

# Tried in order after the requested font, for each character it lacks.
FALLBACK_FONTS: Final = (
    "noto-sans",
    *(f"noto-sans-{script}" for script in _NOTO_SCRIPTS if not script.startswith("symbols")),
    "noto-sans-cjk",
    "noto-sans-symbols",
    "noto-sans-symbols2",
    EMOJI_FONT,
    "dejavu-sans",
    # Last, the faces with characters no other font has (math letters, APL, arrows): a bold
    # or serif glyph is better than an empty box.
    "dejavu-serif",
    "dejavu-sans-mono",
    "dejavu-serif-bold",
    "dejavu-sans-bold",
    "dejavu-sans-mono-bold",
)


def font_path(font_dir: str, name: str) -> str:
    """Path of an allowlisted font; `name` must already be validated."""
    return os.path.join(font_dir, ALL_FONTS[name].path)
