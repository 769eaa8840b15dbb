"""Text layout shared by both engines: fonts per character, bidi, shaping, line breaks, line
positions and the canvas size.

Each paragraph is split into grapheme clusters, each drawn by the first font that has it
(`font_fallback`); FriBiDi gives each character its embedding level; lines break at the
opportunities of the Unicode line breaking algorithm (ICU, which also finds the words of Thai
and other scripts written without spaces), measured with HarfBuzz through
Pillow's raqm layout; each line is then cut into runs of one font and one level, put in visual
order (rule L2) and placed. Both engines draw these runs where they are placed, so the same
request gives the same image size, and the same positions, whichever engine draws it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from renderq.errors import ErrorCode, InvalidRequest
from renderq.settings import Settings
from renderq.text_request import TextRequest
from worker import bidi
from worker.font_fallback import Face, assign_faces, font_chain
from worker.text_breaks import grapheme_clusters, line_break_ends

TAB: Final = "    "


@dataclass(frozen=True)
class TextRun:
    """Part of a line in one font and one direction, `text` in logical order, drawn with its
    left edge at `x`."""

    text: str
    face: Face
    rtl: bool
    x: int
    width: float


@dataclass(frozen=True)
class PlacedLine:
    text: str  # logical order
    x: int
    top: int  # y of the line's ascender
    baseline: int
    runs: tuple[TextRun, ...]  # visual order, left to right


@dataclass(frozen=True)
class TextLayout:
    width: int
    height: int
    size: int
    ascent: int  # of the requested font
    lines: tuple[PlacedLine, ...]


@dataclass(frozen=True)
class _Cluster:
    text: str
    face: Face
    level: int


@dataclass(frozen=True)
class _Line:
    clusters: tuple[_Cluster, ...]
    rtl: bool  # the paragraph's direction: where the line is aligned
    width: float


@lru_cache(maxsize=128)
def load_font(path: str, size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    # Pillow looks a missing font up by name in the system font folders; only the
    # allowlisted file itself may be used.
    if not os.path.isfile(path):
        raise FileNotFoundError(f"font file {path} is missing")
    return ImageFont.truetype(path, size, index=index, layout_engine=ImageFont.Layout.RAQM)


def face_font(face: Face, size: int) -> ImageFont.FreeTypeFont:
    """The face at `size`, or at its strike for a bitmap font (see `face_scale`)."""
    return load_font(face.path, face.strike or size, face.index)


def face_scale(face: Face, size: int) -> float:
    return size / face.strike if face.strike else 1.0


def face_metrics(face: Face, size: int) -> tuple[int, int]:
    """(ascent, descent) in px at `size`."""
    ascent, descent = face_font(face, size).getmetrics()
    scale = face_scale(face, size)
    return round(ascent * scale), round(descent * scale)


@lru_cache(maxsize=8192)
def run_width(face: Face, size: int, text: str, rtl: bool) -> float:
    """The shaped advance of `text` in one face and direction."""
    font = face_font(face, size)
    return font.getlength(text, direction="rtl" if rtl else "ltr") * face_scale(face, size)


def layout_text(request: TextRequest, settings: Settings) -> TextLayout:
    chain = font_chain(settings.font_dir, request.font)
    ascent, descent = face_metrics(chain[0], request.size)
    padding = max(1, round(request.size * 0.25))
    wrap_at = None if request.width is None else max(1, request.width - 2 * padding)
    replace = request.on_missing_glyph == "replace"
    lines: list[_Line] = []
    for paragraph in request.text.replace("\t", TAB).split("\n"):
        lines.extend(_paragraph_lines(paragraph, chain, request.size, wrap_at, replace))
        if len(lines) > settings.max_text_lines:
            raise InvalidRequest(
                ErrorCode.IMAGE_TOO_LARGE,
                f"the text wraps to more than {settings.max_text_lines} lines, the limit",
                "text",
            )
    widest = max((line.width for line in lines), default=0.0)
    width = request.width or math.ceil(widest - 0.001) + 2 * padding
    placed: list[PlacedLine] = []
    top = padding
    for line in lines:
        line_ascent, line_descent = _line_metrics(line, request.size, (ascent, descent))
        placed.append(_place(line, request.size, top, top + line_ascent, width, padding))
        top += line_ascent + line_descent
    height = request.height or top + padding
    _check_canvas(width, height, settings)
    return TextLayout(width, height, request.size, ascent, tuple(placed))


def _line_metrics(line: _Line, size: int, primary: tuple[int, int]) -> tuple[int, int]:
    """The tallest ascent and descent of the line's fonts, the requested font's at least."""
    metrics = [primary, *(face_metrics(face, size) for face in {c.face for c in line.clusters})]
    return max(a for a, _ in metrics), max(d for _, d in metrics)


def _paragraph_lines(
    paragraph: str, chain: tuple[Face, ...], size: int, wrap_at: int | None, replace: bool
) -> list[_Line]:
    if not paragraph:
        return [_Line((), False, 0.0)]
    assigned = assign_faces(grapheme_clusters(paragraph), chain, replace)
    text = "".join(cluster for cluster, _ in assigned)
    levels, rtl = bidi.paragraph_levels(text)
    clusters: list[_Cluster] = []
    offset = 0
    for cluster, face in assigned:
        clusters.append(_Cluster(cluster, face, levels[offset]))
        offset += len(cluster)
    spans = [(0, len(clusters))] if wrap_at is None else _break_lines(text, clusters, size, wrap_at)
    lines = []
    for start, end in spans:
        kept = tuple(clusters[start : _trim(clusters, start, end)])
        lines.append(_Line(kept, rtl, _width(kept, size)))
    return lines


def _trim(clusters: Sequence[_Cluster], start: int, end: int) -> int:
    """`end` moved back over trailing spaces, which hang past the line's end."""
    while end > start and clusters[end - 1].text.isspace():
        end -= 1
    return end


def _pieces(clusters: Sequence[_Cluster]) -> Iterator[tuple[str, Face, int]]:
    """Maximal stretches of one face and one level: (text, face, level), logical order."""
    i = 0
    while i < len(clusters):
        j = i + 1
        while j < len(clusters) and (clusters[j].face, clusters[j].level) == (
            clusters[i].face,
            clusters[i].level,
        ):
            j += 1
        yield "".join(c.text for c in clusters[i:j]), clusters[i].face, clusters[i].level
        i = j


def _width(clusters: Sequence[_Cluster], size: int) -> float:
    return sum(
        run_width(face, size, text, level % 2 == 1) for text, face, level in _pieces(clusters)
    )


def _break_lines(
    text: str, clusters: Sequence[_Cluster], size: int, wrap_at: int
) -> list[tuple[int, int]]:
    """Greedy: each line takes as many break-separated segments as fit in `wrap_at`; a
    segment wider than a line alone is broken between grapheme clusters."""
    by_offset: dict[int, int] = {}
    offset = 0
    for i, cluster in enumerate(clusters):
        offset += len(cluster.text)
        by_offset[offset] = i + 1
    # Only boundaries between clusters: never inside a letter and its marks.
    breaks = [by_offset[b] for b in line_break_ends(text) if b in by_offset]

    def fits(start: int, end: int) -> bool:
        return _width(clusters[start : _trim(clusters, start, end)], size) <= wrap_at

    spans: list[tuple[int, int]] = []
    start, fitted = 0, 0
    for end in breaks:
        if fits(start, end):
            fitted = end
            continue
        if fitted > start:
            spans.append((start, fitted))
            start = fitted
            if fits(start, end):
                fitted = end
                continue
        start = _break_inside(clusters, start, end, fits, spans)
        fitted = end if start < end else start
    if start < len(clusters):
        spans.append((start, len(clusters)))
    return spans


def _break_inside(
    clusters: Sequence[_Cluster],
    start: int,
    end: int,
    fits: Callable[[int, int], bool],
    spans: list[tuple[int, int]],
) -> int:
    """Emergency breaks inside a segment too wide for a line: as many clusters as fit, one
    at least. Returns where the rest of the segment (which fits) starts."""
    while not fits(start, end):
        cut = start + 1
        while cut < end and fits(start, cut + 1):
            cut += 1
        spans.append((start, cut))
        start = cut
    return start


def _place(
    line: _Line, size: int, top: int, baseline: int, canvas_width: int, padding: int
) -> PlacedLine:
    """The line's runs in visual order, left to right; a right-to-left paragraph's lines are
    aligned to the right."""
    pieces = list(_pieces(line.clusters))
    ordered = bidi.visual_order(pieces, [level for _, _, level in pieces])
    x = canvas_width - padding - line.width if line.rtl else float(padding)
    runs: list[TextRun] = []
    for text, face, level in ordered:
        width = run_width(face, size, text, level % 2 == 1)
        runs.append(TextRun(text, face, level % 2 == 1, round(x), width))
        x += width
    left = runs[0].x if runs else padding
    logical = "".join(c.text for c in line.clusters)
    return PlacedLine(logical, left, top, baseline, tuple(runs))


def cluster_positions(run: TextRun, size: int) -> list[tuple[str, int]]:
    """Each grapheme cluster of a run with its x, in visual order, for an engine that draws
    cluster by cluster (ImageMagick: no shaping). Each advance is measured with the next
    cluster, so that kerning between them counts; a right-to-left run's clusters are mirrored
    (brackets face the other way) and placed from its right edge."""
    clusters = grapheme_clusters(run.text)
    advances = []
    for i, cluster in enumerate(clusters):
        advance = run_width(run.face, size, cluster, run.rtl)
        if i + 1 < len(clusters):
            following = clusters[i + 1]
            pair = run_width(run.face, size, cluster + following, run.rtl)
            advance = pair - run_width(run.face, size, following, run.rtl)
        advances.append(advance)
    placed: list[tuple[str, int]] = []
    pen = 0.0
    for cluster, advance in zip(clusters, advances, strict=True):
        if run.rtl:
            placed.append((bidi.mirrored(cluster), run.x + round(run.width - pen - advance)))
        else:
            placed.append((cluster, run.x + round(pen)))
        pen += advance
    return placed[::-1] if run.rtl else placed


@dataclass(frozen=True)
class EmojiLayer:
    """A colour-emoji run drawn at its font's strike (RGBA); each engine scales it to
    `scaled` with its own resampler and composites it with its top left at `at`."""

    strike: Image.Image
    scaled: tuple[int, int]
    at: tuple[int, int]


def emoji_layer(run: TextRun, size: int, baseline: int) -> EmojiLayer:
    font = face_font(run.face, size)
    ascent, descent = font.getmetrics()
    strike = Image.new("RGBA", (max(1, math.ceil(font.getlength(run.text))), ascent + descent))
    ImageDraw.Draw(strike).text((0, ascent), run.text, font=font, anchor="ls", embedded_color=True)
    scale = face_scale(run.face, size)
    scaled = (max(1, round(strike.width * scale)), max(1, round(strike.height * scale)))
    scaled_ascent, _ = face_metrics(run.face, size)
    return EmojiLayer(strike, scaled, (run.x, baseline - scaled_ascent))


def _check_canvas(width: int, height: int, settings: Settings) -> None:
    if width > settings.max_width or height > settings.max_height:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the text needs {width}x{height} px; the limit is "
            f"{settings.max_width}x{settings.max_height}",
            "text",
        )
    if width * height > settings.max_pixels:
        raise InvalidRequest(
            ErrorCode.IMAGE_TOO_LARGE,
            f"the text needs {width * height} pixels; the limit is {settings.max_pixels}",
            "text",
        )
