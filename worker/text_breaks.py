"""Where text may be cut: grapheme clusters (UAX #29) and line breaks (UAX #14), from ICU.

ICU is the system's libicu, already mapped into every render process (ImageMagick's libxml2
loads it), called through ctypes as Wand calls ImageMagick: no second copy of its 30 MB of
data in the sandbox's address space. ICU also finds the words of Thai and of the other
scripts written without spaces, by dictionary.
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache
from typing import Final

_CHARACTER: Final = 0  # UBRK_CHARACTER
_LINE: Final = 2  # UBRK_LINE
_DONE: Final = -1  # UBRK_DONE
# ICU's root locale: the Unicode rules, not one language's tailoring.
_ROOT: Final = b""
_LIBRARY_PATTERNS: Final = ("/usr/lib/*-linux-gnu/libicuuc.so.*", "/lib/*-linux-gnu/libicuuc.so.*")


class _Icu:
    """The few ICU functions used; their symbols carry ICU's major version (`ubrk_open_72`)."""

    def __init__(self, path: str) -> None:
        version = path.rsplit(".so.", 1)[1].split(".", maxsplit=1)[0]
        lib = ctypes.CDLL(path)
        self.open = getattr(lib, f"ubrk_open_{version}")
        self.open.restype = ctypes.c_void_p
        self.open.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_int32,
            ctypes.POINTER(ctypes.c_int),
        ]
        self.next = getattr(lib, f"ubrk_next_{version}")
        self.next.restype = ctypes.c_int32
        self.next.argtypes = [ctypes.c_void_p]
        self.close = getattr(lib, f"ubrk_close_{version}")
        self.close.restype = None
        self.close.argtypes = [ctypes.c_void_p]


@lru_cache(maxsize=1)
def _icu() -> _Icu:
    found = sorted(
        (path for pattern in _LIBRARY_PATTERNS for path in glob.glob(pattern)),
        key=lambda path: (len(os.path.basename(path)), path),
    )
    if not found:
        raise OSError("libicu is missing (Debian's libicu72)")
    return _Icu(found[0])


def load() -> None:
    """Bind ICU now (the sandbox's zygote does, before it forks children)."""
    _icu()


def _ends(text: str, kind: int) -> list[int]:
    """The boundaries after each segment, as offsets into `text` (str indices)."""
    if not text:
        return []
    icu = _icu()
    encoded = text.encode("utf-16-le")
    buffer = ctypes.create_string_buffer(encoded, len(encoded))
    status = ctypes.c_int(0)
    iterator = icu.open(kind, _ROOT, buffer, len(encoded) // 2, ctypes.byref(status))
    if status.value > 0 or not iterator:
        raise OSError(f"ICU could not open a break iterator (error {status.value})")
    # ICU counts UTF-16 units; a character beyond the BMP is two of them.
    index_of_unit = {0: 0}
    units = 0
    for index, ch in enumerate(text, 1):
        units += 2 if ord(ch) > 0xFFFF else 1
        index_of_unit[units] = index
    try:
        ends = []
        while (boundary := icu.next(iterator)) != _DONE:
            ends.append(index_of_unit[boundary])
        return ends
    finally:
        icu.close(iterator)


def grapheme_clusters(text: str) -> list[str]:
    """User-perceived characters: a letter and its marks, an emoji sequence."""
    clusters, start = [], 0
    for end in _ends(text, _CHARACTER):
        clusters.append(text[start:end])
        start = end
    return clusters


def line_break_ends(text: str) -> list[int]:
    """Where a line may end, as offsets into `text`; the last is `len(text)`."""
    return _ends(text, _LINE)
