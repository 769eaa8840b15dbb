"""Output image formats renderq writes, with their media types."""

from __future__ import annotations

from typing import Final

CONTENT_TYPES: Final = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}

OUTPUT_FORMATS: Final = tuple(CONTENT_TYPES)

# Formats that cannot hold an alpha channel: a transparent background is flattened onto white.
OPAQUE_FORMATS: Final = frozenset({"jpeg"})
