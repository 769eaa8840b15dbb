"""Turn a job's request into image bytes, validating it again first, and compare two rendered
images; runs in the sandbox only.

The worker process never calls this: it hands the job (or the two images) to a child, which
does.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Any, Final

from PIL import AvifImagePlugin, ImageChops, ImageStat
from PIL import Image as PillowImage

from renderq.errors import ErrorCode, InvalidRequest
from renderq.image_header import probe_image
from renderq.image_request import parse_image_request
from renderq.settings import Settings
from renderq.text_request import parse_text_request
from renderq.vocabulary import ENGINES, OUTPUT_FORMATS, JobKind
from worker.comparison import ImageInfo, PixelComparison
from worker.engines import RENDERERS
from worker.engines.pillow.image import DECODE_ERRORS
from worker.engines.pillow.text import PIL_FORMATS
from worker.font_fallback import preload as preload_fonts
from worker.layout import layout_text

# Text in every script of the fallback chain an engine draws: the zygote's warm-up reads every
# font's coverage and opens the faces, so children start with them loaded.
WARM_UP_TEXT: Final = {
    "pillow": "renderq مرحبا שלום नमस्ते বাংলা தமிழ் ไทย 你好 かな 한국 Ελλάδα Русский 😀",
    "imagemagick": "renderq שלום 你好 かな 한국 Ελλάδα Русский 😀",
}

# What renderq writes, and so all a comparison decodes: never a format guessed from the bytes.
_RESULT_FORMATS: Final = [PIL_FORMATS[fmt] for fmt in OUTPUT_FORMATS]


def render_job(kind: str, request: Any, upload: bytes | None, settings: Settings) -> bytes:
    """The encoded image for a job; raises a `RenderqError` whose code the job fails with."""
    if kind == JobKind.TEXT:
        text_request = parse_text_request(request, settings)
        layout = layout_text(text_request, settings)
        return RENDERERS[text_request.engine].render_text(layout, text_request)
    if kind == JobKind.IMAGE:
        if upload is None:
            raise InvalidRequest(ErrorCode.INVALID_JOB, "the uploaded image has expired")
        image_request = parse_image_request(request, probe_image(upload), settings)
        return RENDERERS[image_request.engine].transform_image(upload, image_request, settings)
    raise InvalidRequest(ErrorCode.INVALID_JOB, f"unknown job kind {kind!r}")


def compare_images(first: bytes, second: bytes) -> PixelComparison:
    """Each image's format and size (an empty one is missing) and, when both have one size,
    how far apart their pixels are in RGBA; raises InvalidRequest for an image that does not
    decode as one of renderq's output formats."""
    left, right = (_decode_result(data) if data else None for data in (first, second))
    found = PixelComparison(_info(left), _info(right))
    if left is None or right is None or left.size != right.size:
        return found
    diff = ImageChops.difference(left.convert("RGBA"), right.convert("RGBA"))
    mean = sum(ImageStat.Stat(diff).mean) / len(diff.getbands())
    # One (low, high) pair per band: RGBA has four.
    extrema: Any = diff.getextrema()
    largest = max(high for _low, high in extrema)
    return PixelComparison(found.first, found.second, round(mean, 4), int(largest))


def _decode_result(data: bytes) -> PillowImage.Image:
    try:
        image = PillowImage.open(io.BytesIO(data), formats=_RESULT_FORMATS)
        image.load()
    except DECODE_ERRORS as exc:
        raise InvalidRequest(ErrorCode.INVALID_IMAGE, "an image to compare is corrupt") from exc
    return image


def _info(image: PillowImage.Image | None) -> ImageInfo | None:
    if image is None:
        return None
    return ImageInfo(str(image.format).lower(), image.width, image.height)


def refuse_bombs(settings: Settings) -> None:
    """Pillow warns past MAX_IMAGE_PIXELS and raises past twice that; renderq raises at once."""
    PillowImage.MAX_IMAGE_PIXELS = settings.max_input_pixels
    warnings.simplefilter("error", PillowImage.DecompressionBombWarning)


def run_codecs_on_one_thread() -> None:
    """A render child may start no thread (its RLIMIT_NPROC is 0), and Pillow's AVIF codecs
    start one per CPU unless told otherwise: they run on the calling thread instead."""
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1


def warm_up(settings: Settings, images: Mapping[str, bytes]) -> list[str]:
    """Render once on every engine and decode every format, so that fonts, Pillow's plugins
    and ImageMagick's coder modules are loaded before the zygote forks its children.

    Returns what failed: a broken set-up (fonts missing) fails those jobs, not the worker.
    """
    refuse_bombs(settings)
    run_codecs_on_one_thread()
    jobs: list[tuple[JobKind, dict[str, Any], bytes | None]] = []
    for engine in ENGINES:
        jobs.append((JobKind.TEXT, {"text": WARM_UP_TEXT[engine], "engine": engine}, None))
        ops = [{"op": "resize", "width": 4}]
        jobs += [(JobKind.IMAGE, {"engine": engine, "ops": ops}, data) for data in images.values()]
    failed = []
    try:
        preload_fonts(settings.font_dir)
    except OSError as exc:  # reported, and text jobs fail later
        failed.append(f"fonts: {exc}")
    for kind, request, upload in jobs:
        try:
            render_job(kind, request, upload, settings)
        except Exception as exc:  # reported, and the same job fails later
            failed.append(f"{kind} {request.get('engine')}: {exc}")
    return failed
