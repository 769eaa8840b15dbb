"""Where an engine's coders fall short of renderq's formats, and the refusals that follow.

Both engines read and write every format in `renderq.vocabulary`, with two exceptions that
come from the sandbox and ImageMagick 6's AVIF coder (through libheif):

- it cannot write AVIF: libheif starts libaom's encoder with four threads, which a render
  child may not start (its RLIMIT_NPROC is 0), and ImageMagick 6 has no option to ask for
  one, so it writes an empty image; a request for it is refused with `unsupported_format`;
- it reads an AVIF's colour but not its alpha plane, so an AVIF with one is refused on
  that engine (415) rather than rendered without its transparency.

The front applies these while validating a request, and the worker again on reading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from renderq.errors import ErrorCode, InvalidRequest, UnsupportedMediaType
from renderq.vocabulary import Engine

UNWRITABLE_FORMATS: Final[Mapping[str, frozenset[str]]] = {
    Engine.IMAGEMAGICK: frozenset({"avif"}),
}
ALPHA_BLIND_INPUTS: Final[Mapping[str, frozenset[str]]] = {
    Engine.IMAGEMAGICK: frozenset({"avif"}),
}


def can_write(engine: str, fmt: str) -> bool:
    return fmt not in UNWRITABLE_FORMATS.get(engine, frozenset())


def check_writable(engine: str, fmt: str) -> None:
    """Refuse an output format the engine cannot write: 422 `unsupported_format`."""
    if not can_write(engine, fmt):
        raise InvalidRequest(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"the {engine} engine cannot write {fmt}; choose another format or engine",
            "format",
        )


def check_readable(engine: str, fmt: str, alpha_plane: bool) -> None:
    """Refuse an upload the engine's decoder would read only in part (an alpha plane it
    cannot see), rather than render something else than was sent: 415."""
    if alpha_plane and fmt in ALPHA_BLIND_INPUTS.get(engine, frozenset()):
        raise UnsupportedMediaType(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"the {engine} engine cannot read the alpha plane of a {fmt} image; "
            "send it to another engine",
            "file",
        )
