"""The words the front, the worker and the sandbox share: job kinds, engines, image formats.

Each is defined here once; request rules, the OpenAPI document, the engines and the sandbox
all take them from this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class JobKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES: Final = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


class Engine(StrEnum):
    PILLOW = "pillow"
    IMAGEMAGICK = "imagemagick"


ENGINES: Final = tuple(str(engine) for engine in Engine)
DEFAULT_ENGINE: Final = Engine.PILLOW

# What renderq writes, with the media type each result is served as.
OUTPUT_MEDIA_TYPES: Final = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "avif": "image/avif",
}
OUTPUT_FORMATS: Final = tuple(OUTPUT_MEDIA_TYPES)
DEFAULT_TEXT_FORMAT: Final = "png"
# An image job's format when it gives none and its input's is not an output format.
FALLBACK_IMAGE_FORMAT: Final = "png"
# Formats that cannot hold an alpha channel: a transparent background is flattened onto white.
OPAQUE_FORMATS: Final = frozenset({"jpeg"})

# What renderq accepts as an upload, recognised by its bytes, never its name or media type.
INPUT_MEDIA_TYPES: Final = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
}
INPUT_FORMATS: Final = tuple(INPUT_MEDIA_TYPES)

# The EXIF tag of the orientation a camera recorded, in a JPEG's APP1 block.
EXIF_ORIENTATION_TAG: Final = 0x0112
