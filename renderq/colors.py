"""The color grammar: `#rgb`, `#rrggbb`, `#rrggbbaa` or a name from a small fixed set.

Colors are parsed into RGBA tuples here, and engines only ever see the numbers, so no client
string reaches ImageMagick's own (much larger) color parser.
"""

from __future__ import annotations

import re
from typing import Final

RGBA = tuple[int, int, int, int]

NAMED_COLORS: Final[dict[str, RGBA]] = {
    "black": (0, 0, 0, 255),
    "white": (255, 255, 255, 255),
    "red": (255, 0, 0, 255),
    "green": (0, 128, 0, 255),
    "blue": (0, 0, 255, 255),
    "yellow": (255, 255, 0, 255),
    "orange": (255, 165, 0, 255),
    "purple": (128, 0, 128, 255),
    "gray": (128, 128, 128, 255),
    "transparent": (0, 0, 0, 0),
}

_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


def parse_color(text: str) -> RGBA | None:
    """The RGBA value of `text`, or None when it is not in the grammar."""
    named = NAMED_COLORS.get(text.lower())
    if named is not None:
        return named
    if not _HEX.fullmatch(text):
        return None
    digits = text[1:]
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    if len(digits) == 6:
        digits += "ff"
    r, g, b, a = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
    return (r, g, b, a)


def to_hex(rgba: RGBA) -> str:
    """`#rrggbbaa`: the canonical form stored in Redis, which `parse_color` reads back."""
    return "#" + "".join(f"{c:02x}" for c in rgba)
