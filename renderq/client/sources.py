"""Where an image job's image comes from: a path, bytes or a binary file object.

The image is never read whole into memory by the client: a path is opened and its file handed
to httpx, whose multipart body reads it in chunks while sending. A retry sends it again from
the start, which needs a file that can seek back: one that cannot (a pipe) is sent once.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ImageSource = str | os.PathLike[str] | bytes | IO[bytes]


@dataclass(frozen=True)
class Upload:
    name: str  # the multipart part's filename: informative only, the server reads the bytes
    file: IO[bytes]
    rewindable: bool


@contextmanager
def opened(source: ImageSource) -> Iterator[Upload]:
    """The source as a file to stream; a file this opened is closed on leaving."""
    if isinstance(source, bytes):
        yield Upload("image", io.BytesIO(source), rewindable=True)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as file:
            yield Upload(path.name, file, rewindable=True)
    else:
        name = getattr(source, "name", None)
        label = Path(name).name if isinstance(name, str) else "image"
        yield Upload(label, source, rewindable=_seekable(source))


def _seekable(file: IO[bytes]) -> bool:
    try:
        return file.seekable()
    except (AttributeError, ValueError):
        return False
