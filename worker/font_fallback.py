"""Which font draws each character: the requested one, else the first font of the fallback
chain that has it, as browsers do, so that no character a shipped font has is drawn as an
empty box.

Fonts are chosen per grapheme cluster (a letter and its marks, an emoji sequence), so that a
cluster is never split across fonts.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Final

from fontTools.unicodedata import script

from renderq.errors import ErrorCode, InvalidRequest
from renderq.font_coverage import font_coverage
from renderq.fonts import ALL_FONTS, EMOJI_FONT, FALLBACK_FONTS

REPLACEMENT_CHARACTER: Final = "\ufffd"

# Joiners, variation selectors and tags steer the font's choice of glyph; a font need not
# map them to be the right one for their cluster.
_STEERING: Final = frozenset(
    {0x200C, 0x200D, *range(0xFE00, 0xFE10), *range(0xE0020, 0xE0080), *range(0xE0100, 0xE01F0)}
)
_EMOJI_PRESENTATION: Final = 0xFE0F
# Pictographs from here on default to emoji presentation.
_PICTOGRAPHS: Final = 0x1F000
# Scripts a character shares with its neighbours (spaces, punctuation, digits, marks).
_NEUTRAL_SCRIPTS: Final = frozenset({"Zyyy", "Zinh", "Zzzz"})


@dataclass(frozen=True)
class Face:
    """A font file to draw with; `strike` is the pixel size of a bitmap-only font's one strike
    (colour emoji), drawn at that size and scaled to the requested one."""

    name: str
    path: str
    index: int
    strike: int | None
    chars: frozenset[int]

    def __repr__(self) -> str:
        return f"Face({self.name})"

    def has(self, codepoints: Sequence[int]) -> bool:
        return all(cp in self.chars for cp in codepoints)


@cache
def face(font_dir: str, name: str) -> Face:
    coverage = font_coverage(font_dir, name)
    file = ALL_FONTS[name]
    return Face(
        name, os.path.join(font_dir, file.path), file.index, coverage.strike, coverage.chars
    )


@lru_cache(maxsize=64)
def font_chain(font_dir: str, requested: str) -> tuple[Face, ...]:
    """The requested font, then the fallback fonts not already in the chain."""
    names = dict.fromkeys((requested, *FALLBACK_FONTS))
    return tuple(face(font_dir, name) for name in names)


def preload(font_dir: str) -> None:
    """Read every font's coverage now (the zygote does, so that children share it)."""
    for name in ALL_FONTS:
        face(font_dir, name)


def assign_faces(
    clusters: Sequence[str], chain: tuple[Face, ...], replace: bool
) -> list[tuple[str, Face]]:
    """Each cluster with the face that draws it; a cluster no font has is refused
    (`unsupported_character`), or replaced by U+FFFD when `replace`."""
    assigned: list[tuple[str, Face]] = []
    previous: Face | None = None
    for cluster in clusters:
        drawn = cluster
        chosen = _face_for(cluster, chain, previous)
        if chosen is None and replace:
            drawn = REPLACEMENT_CHARACTER
            chosen = _face_for(drawn, chain, previous)
        if chosen is None:
            raise _unsupported(drawn, chain)
        assigned.append((drawn, chosen))
        previous = chosen
    return assigned


def _face_for(cluster: str, chain: tuple[Face, ...], previous: Face | None) -> Face | None:
    needed = [ord(ch) for ch in cluster if ord(ch) not in _STEERING] or [ord(cluster[0])]
    if _wants_emoji(cluster, needed):
        for candidate in chain:
            if candidate.name == EMOJI_FONT and candidate.has(needed):
                return candidate
    # Spaces and punctuation stay in the font of the text around them: fewer, longer runs.
    # (Not in an emoji font, whose space is an emoji's width.)
    if previous and not previous.strike and previous.has(needed) and _is_neutral(cluster):
        return previous
    for candidate in chain:
        if candidate.has(needed):
            return candidate
    # No font has the whole cluster: the one with its base character draws what it can.
    return next((candidate for candidate in chain if needed[0] in candidate.chars), None)


def _is_neutral(cluster: str) -> bool:
    return all(script(ch) in _NEUTRAL_SCRIPTS for ch in cluster)


def _wants_emoji(cluster: str, needed: list[int]) -> bool:
    return chr(_EMOJI_PRESENTATION) in cluster or needed[0] >= _PICTOGRAPHS


def _unsupported(cluster: str, chain: tuple[Face, ...]) -> InvalidRequest:
    lacking = (ch for ch in cluster if not any(ord(ch) in each.chars for each in chain))
    missing = next(lacking, cluster[0])
    name = unicodedata.name(missing, "unnamed")
    return InvalidRequest(
        ErrorCode.UNSUPPORTED_CHARACTER,
        f"no font renderq ships has U+{ord(missing):04X} ({name}); send "
        '"on_missing_glyph": "replace" to draw it as U+FFFD',
        "text",
    )
