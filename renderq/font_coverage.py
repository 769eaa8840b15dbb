"""Which characters and scripts each allowlisted font covers, read from its cmap.

Read with fontTools, which parses font tables and draws nothing, so the front may use it for
`GET /fonts` without loading an image library; the worker uses the same sets to pick a font
for each character. A font's cmap is read once per process.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Final

from fontTools.ttLib import TTCollection, TTFont

from renderq.fonts import ALL_FONTS, FALLBACK_FONTS, FONT_FILES, FontFile

# A font covers a script when it has every one of these letters (a script's common letters,
# not all of them: a font may lack a rare one and still write the language).
SCRIPT_SAMPLES: Final[dict[str, str]] = {
    "Latin": "AZaz\u00e9\u0131\u0142",
    "Greek": "\u0391\u03a9\u03b1\u03c9",
    "Cyrillic": "\u0410\u042f\u0430\u044f",
    "Armenian": "\u0531\u0561",
    "Georgian": "\u10d0\u10f0",
    "Hebrew": "\u05d0\u05ea",
    "Arabic": "\u0627\u0628\u064a",
    "Thaana": "\u0780\u07a5",
    "Devanagari": "\u0905\u0915\u094d",
    "Bengali": "\u0985\u0995\u09cd",
    "Gurmukhi": "\u0a05\u0a15",
    "Gujarati": "\u0a85\u0a95",
    "Oriya": "\u0b05\u0b15",
    "Tamil": "\u0b85\u0b95",
    "Telugu": "\u0c05\u0c15",
    "Kannada": "\u0c85\u0c95",
    "Malayalam": "\u0d05\u0d15",
    "Sinhala": "\u0d85\u0d9a",
    "Thai": "\u0e01\u0e2e",
    "Lao": "\u0e81\u0eae",
    "Myanmar": "\u1000\u1021",
    "Khmer": "\u1780\u17a2",
    "Ethiopic": "\u1200\u1350",
    "Han": "\u4e00\u4f60\u597d\u9f8d\u8bf4\u8aaa",
    "Hiragana": "\u3042\u3093",
    "Katakana": "\u30a2\u30f3",
    "Hangul": "\uac00\ud55c",
    "Symbols": "\u2190\u263a",
    "Dingbats": "\u25a0\u2605\u2713",
    "Emoji": "\U0001f600\U0001f44d",
}


# cmap encoding records of full-Unicode subtables: Windows UCS-4, Unicode 2.0 full, Unicode full.
_FULL_UNICODE: Final = frozenset({(3, 10), (0, 4), (0, 6)})


@dataclass(frozen=True)
class Coverage:
    """One face's characters, and the pixel size of its bitmap strike if it has no outlines
    (a colour emoji font is drawn at that size and scaled)."""

    chars: frozenset[int]
    strike: int | None


@cache
def font_coverage(font_dir: str, name: str) -> Coverage:
    """The coverage of an allowlisted font; raises OSError when its file is missing."""
    face = ALL_FONTS[name]
    font = _open(os.path.join(font_dir, face.path), face)
    try:
        chars = _segmented_cmap(font.reader["cmap"])
        if chars is None:
            chars = frozenset(font.getBestCmap() or {})
        return Coverage(chars, _strike(font))
    finally:
        font.close()


def _segmented_cmap(table: bytes) -> frozenset[int] | None:
    """The characters of a full-Unicode cmap subtable (format 12: ranges of characters), read
    as ranges: fontTools maps each of a CJK font's 45,000 characters to a glyph name, about
    0.3 s a face, where ranges take a few milliseconds. None when there is no such subtable
    (small fonts, which fontTools reads quickly)."""
    _, count = struct.unpack_from(">HH", table, 0)
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", table, 4 + 8 * i)
        if (platform, encoding) not in _FULL_UNICODE or _u16(table, offset) != 12:
            continue
        (groups,) = struct.unpack_from(">I", table, offset + 12)
        chars: set[int] = set()
        for group in range(groups):
            first, last, glyph = struct.unpack_from(">III", table, offset + 16 + 12 * group)
            # A range mapped from glyph 0 starts with a character drawn as .notdef: no glyph.
            chars.update(range(first + (glyph == 0), last + 1))
        return frozenset(chars)
    return None


def _u16(table: bytes, offset: int) -> int:
    value: int = struct.unpack_from(">H", table, offset)[0]
    return value


def _open(path: str, face: FontFile) -> TTFont:
    if path.endswith(".ttc"):
        return TTCollection(path, lazy=True).fonts[face.index]
    return TTFont(path, lazy=True)


def _strike(font: TTFont) -> int | None:
    if "glyf" in font or "CFF " in font or "CBLC" not in font:
        return None
    strikes = font["CBLC"].strikes
    return max(int(strike.bitmapSizeTable.ppemY) for strike in strikes)


def covered_scripts(chars: frozenset[int]) -> tuple[str, ...]:
    """The scripts of `SCRIPT_SAMPLES` whose every sample letter is in `chars`."""
    return tuple(
        script
        for script, sample in SCRIPT_SAMPLES.items()
        if all(ord(ch) in chars for ch in sample)
    )


@lru_cache(maxsize=4)
def font_manifest(font_dir: str) -> dict[str, Any]:
    """`GET /fonts`: every font a request may name or fallback may reach, with its scripts."""
    families = [
        {
            "name": name,
            "file": os.path.basename(face.path),
            "scripts": list(covered_scripts(font_coverage(font_dir, name).chars)),
            "requestable": name in FONT_FILES,
        }
        for name, face in ALL_FONTS.items()
    ]
    return {"fallback": list(FALLBACK_FONTS), "families": families}
