"""The Unicode bidirectional algorithm (UAX #9), through GNU FriBiDi.

FriBiDi is the library Pillow's raqm layout already calls to order a run; the layout calls
it too, for whole paragraphs, because the levels must be known before lines are broken and
each line is reordered after (the algorithm's rule L2). Loaded with ctypes, as Wand loads
ImageMagick: no compiled extension.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, TypeVar

T = TypeVar("T")

# FriBidiParType: let the first strong character decide the paragraph's direction (P2, P3).
_PAR_ON: Final = 0x40
_PAR_RTL: Final = 0x111


@lru_cache(maxsize=1)
def _fribidi() -> ctypes.CDLL:
    # By soname, through the loader's cache: find_library would run ldconfig in a subprocess.
    lib = ctypes.CDLL("libfribidi.so.0")
    lib.fribidi_get_par_embedding_levels_ex.restype = ctypes.c_byte
    lib.fribidi_get_mirror_char.restype = ctypes.c_int
    return lib


def paragraph_levels(text: str) -> tuple[tuple[int, ...], bool]:
    """Each character's embedding level, and whether the paragraph is right to left."""
    n = len(text)
    if n == 0:
        return (), False
    lib = _fribidi()
    chars = (ctypes.c_uint32 * n)(*map(ord, text))
    types = (ctypes.c_uint32 * n)()
    brackets = (ctypes.c_uint32 * n)()
    levels = (ctypes.c_byte * n)()
    direction = ctypes.c_uint32(_PAR_ON)
    lib.fribidi_get_bidi_types(chars, n, types)
    lib.fribidi_get_bracket_types(chars, n, types, brackets)
    if (
        lib.fribidi_get_par_embedding_levels_ex(types, brackets, n, ctypes.byref(direction), levels)
        == 0
    ):
        raise MemoryError("FriBiDi could not resolve the levels")
    return tuple(levels), direction.value == _PAR_RTL


def mirrored(text: str) -> str:
    """`text` with each character that has a mirror image swapped for it (rule L4), for a
    right-to-left run drawn by an engine that does not mirror."""
    lib = _fribidi()
    out = ctypes.c_uint32()
    return "".join(
        chr(out.value) if lib.fribidi_get_mirror_char(ord(ch), ctypes.byref(out)) else ch
        for ch in text
    )


def visual_order(items: Sequence[T], levels: Sequence[int]) -> list[T]:
    """Rule L2: from the highest level down to the lowest odd one, reverse every sequence of
    items at that level or above."""
    order = list(range(len(items)))
    if not levels:
        return []
    lowest_odd = min(level for level in levels) | 1
    for level in range(max(levels), lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] < level:
                i += 1
                continue
            j = i
            while j < len(order) and levels[order[j]] >= level:
                j += 1
            order[i:j] = reversed(order[i:j])
            i = j
    return [items[i] for i in order]
