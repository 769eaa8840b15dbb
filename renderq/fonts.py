"""The font allowlist: clients name a font, never a path.

Only the faces of Debian's fonts-dejavu-core are listed, so the set is the same on every
machine that ran the set-up.
"""

from __future__ import annotations

import os
from typing import Final

DEFAULT_FONT: Final = "dejavu-sans"

FONT_FILES: Final[dict[str, str]] = {
    "dejavu-sans": "DejaVuSans.ttf",
    "dejavu-sans-bold": "DejaVuSans-Bold.ttf",
    "dejavu-sans-mono": "DejaVuSansMono.ttf",
    "dejavu-sans-mono-bold": "DejaVuSansMono-Bold.ttf",
    "dejavu-serif": "DejaVuSerif.ttf",
    "dejavu-serif-bold": "DejaVuSerif-Bold.ttf",
}


def font_path(font_dir: str, name: str) -> str:
    """Path of an allowlisted font; `name` must already be validated."""
    return os.path.join(font_dir, FONT_FILES[name])
