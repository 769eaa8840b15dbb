"""Read an AVIF's size and orientation from its ISOBMFF boxes, for the header probe.

An AVIF is a HEIF file: an `ftyp` box naming the brand, then a `meta` box that lists items
(`iinf`), names the primary one (`pitm`) and ties each item to its properties (`iprp`: the
`ipco` list and the `ipma` associations). The primary item's `ispe` property is the size
both decoders report; its `irot` and `imir` properties turn it as an EXIF orientation would;
an item tied to it by an `auxl` reference (`iref`) whose `auxC` names alpha is its alpha.

Every box must lie inside its parent and the data, and every walk is capped, so hostile
lengths (zero, tiny, 64-bit, overlapping) end in `MalformedAvif`, never in a long loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
# An image sequence (`avis`) is an animation; its `moov` box holds the frames.
_SEQUENCE_BRAND: Final = b"avis"
# The image kinds both decoders read as one picture: a coded AV1 image, or a grid of them.
_IMAGE_ITEMS: Final = frozenset({b"av01", b"grid"})
# The auxiliary type (in `auxC`) of an alpha plane, AV1's and, in older files, HEVC's.
_ALPHA_TYPES: Final = (
    b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\x00",
    b"urn:mpeg:hevc:2015:auxid:1\x00",
)
# Real files have a few dozen boxes and items (a large grid: a few hundred tiles).
_MAX_BOXES: Final = 4096
# The bytes of ftyp the sniffer reads: real ones list a handful of brands.
_MAX_FTYP: Final = 256

# EXIF orientation of an `irot` (quarter turns anticlockwise) alone, and of an `irot` followed
# by an `imir` about the horizontal axis (axis 0, a top-bottom flip), as MIAF orders them.
# A left-right flip (axis 1) is a top-bottom flip after a half turn.
_TURNED: Final = (1, 8, 3, 6)
_TURNED_THEN_FLIPPED: Final = (4, 5, 2, 7)


class MalformedAvif(ValueError):
    """The boxes are truncated, overlap, or lack what a still AVIF image must have."""


class AvifSequence(Exception):
    """The file is an image sequence (an animation), which renderq refuses whatever its size."""


@dataclass(frozen=True)
class AvifFacts:
    width: int
    height: int
    orientation: int  # EXIF orientation equivalent to the primary item's irot and imir
    alpha: bool = False  # an alpha plane goes with the primary image


@dataclass(frozen=True)
class _Box:
    kind: bytes
    start: int  # the first byte of the body, after the (full box's) header
    end: int


def is_avif(data: bytes) -> bool:
    """An `ftyp` box whose major or compatible brands include avif or avis; one cut short
    inside its major brand counts, to be refused as a truncated AVIF rather than unknown."""
    if data[4:8] != b"ftyp":
        return False
    if len(data) < 12:
        return any(brand.startswith(data[8:]) for brand in _AVIF_BRANDS)
    size = int.from_bytes(data[:4], "big")
    brands = data[8:12] + data[16 : min(size, _MAX_FTYP)]
    return any(brands[i : i + 4] in _AVIF_BRANDS for i in range(0, len(brands), 4))


def read_avif(data: bytes) -> AvifFacts:
    """The primary image's size and orientation; raises `AvifSequence` for an animation and
    `MalformedAvif` (or `struct.error` on a short read) for anything broken."""
    top = {box.kind: box for box in _children(data, 0, len(data))}
    ftyp, meta = top.get(b"ftyp"), top.get(b"meta")
    if ftyp is None or meta is None:
        raise MalformedAvif("the ftyp or meta box is missing")
    if b"moov" in top or _SEQUENCE_BRAND in _brands(data, ftyp):
        raise AvifSequence
    boxes = {box.kind: box for box in _children(data, meta.start + 4, meta.end)}
    for needed in (b"hdlr", b"pitm", b"iinf", b"iprp"):
        if needed not in boxes:
            raise MalformedAvif(f"the meta box has no {needed.decode()} box")
    if data[boxes[b"hdlr"].start + 8 : boxes[b"hdlr"].start + 12] != b"pict":
        raise MalformedAvif("the meta box does not describe a picture")
    primary = _primary_item(data, boxes[b"pitm"])
    if _item_type(data, boxes[b"iinf"], primary) not in _IMAGE_ITEMS:
        raise MalformedAvif("the primary item is not an AV1 image")
    properties = _properties(data, boxes[b"iprp"])
    width, height, orientation = _size_and_orientation(data, properties(primary))
    iref = boxes.get(b"iref")
    auxiliaries = [] if iref is None else _auxiliaries(data, iref, primary)
    alpha = any(_is_alpha(data, properties(item)) for item in auxiliaries)
    return AvifFacts(width, height, orientation, alpha)


def _brands(data: bytes, ftyp: _Box) -> set[bytes]:
    body = data[ftyp.start : ftyp.end]
    return {body[0:4]} | {body[i : i + 4] for i in range(8, len(body) - 3, 4)}


def _children(data: bytes, start: int, end: int) -> Iterator[_Box]:
    """The boxes between `start` and `end`, each checked to lie inside them."""
    pos = start
    for _ in range(_MAX_BOXES):
        if pos >= end:
            return
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:  # a 64-bit size follows the type
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - pos
        if size < header or pos + size > end:
            raise MalformedAvif(f"the {kind!r} box's length does not fit its parent")
        yield _Box(kind, pos + header, pos + size)
        pos += size
    raise MalformedAvif("too many boxes")


def _full_box(data: bytes, box: _Box) -> tuple[int, int]:
    """A full box's version and flags, which start its body."""
    (word,) = struct.unpack_from(">I", data, box.start)
    return word >> 24, word & 0xFFFFFF


def _primary_item(data: bytes, pitm: _Box) -> int:
    version, _ = _full_box(data, pitm)
    (item,) = struct.unpack_from(">H" if version == 0 else ">I", data, pitm.start + 4)
    return int(item)


def _item_type(data: bytes, iinf: _Box, item: int) -> bytes:
    """The type of `item` from its `infe` entry (versions 2 and 3 carry one)."""
    version, _ = _full_box(data, iinf)
    first = iinf.start + (6 if version == 0 else 8)
    for entry in _children(data, first, iinf.end):
        if entry.kind != b"infe":
            continue
        entry_version, _ = _full_box(data, entry)
        if entry_version < 2:
            raise MalformedAvif("an item entry is older than version 2")
        pos = entry.start + 4
        layout = ">HH4s" if entry_version == 2 else ">IH4s"
        item_id, _protection, kind = struct.unpack_from(layout, data, pos)
        if item_id == item:
            return bytes(kind)
    raise MalformedAvif("the primary item is not listed")


def _auxiliaries(data: bytes, iref: _Box, primary: int) -> list[int]:
    """The items an `auxl` reference makes auxiliary images (alpha, depth) of `primary`."""
    version, _ = _full_box(data, iref)
    id_size = 2 if version == 0 else 4
    found = []
    budget = _MAX_BOXES  # targets read over all auxl references: real files have one or two
    for ref in _children(data, iref.start + 4, iref.end):
        if ref.kind != b"auxl":
            continue
        source = int.from_bytes(data[ref.start : ref.start + id_size], "big")
        (count,) = struct.unpack_from(">H", data, ref.start + id_size)
        first = ref.start + id_size + 2
        budget -= count
        if first + count * id_size > ref.end or budget < 0:
            raise MalformedAvif("an auxiliary image reference overruns its box")
        targets = range(first, first + count * id_size, id_size)
        if any(int.from_bytes(data[at : at + id_size], "big") == primary for at in targets):
            found.append(source)
    return found


def _is_alpha(data: bytes, properties: dict[bytes, _Box]) -> bool:
    """Whether an auxiliary item's type (its `auxC` property) is alpha."""
    auxc = properties.get(b"auxC")
    return auxc is not None and data[auxc.start + 4 : auxc.end].startswith(_ALPHA_TYPES)


def _properties(data: bytes, iprp: _Box) -> Callable[[int], dict[bytes, _Box]]:
    """A lookup of the properties `ipma` ties to an item, by kind (each kind once)."""
    boxes = {box.kind: box for box in _children(data, iprp.start, iprp.end)}
    if b"ipco" not in boxes or b"ipma" not in boxes:
        raise MalformedAvif("the item properties are missing")
    listed = list(_children(data, boxes[b"ipco"].start, boxes[b"ipco"].end))
    associations = _associations(data, boxes[b"ipma"])

    def of_item(item: int) -> dict[bytes, _Box]:
        if item not in associations:
            raise MalformedAvif(f"item {item} has no properties")
        found: dict[bytes, _Box] = {}
        for index in associations[item]:
            if not 1 <= index <= len(listed):
                raise MalformedAvif("an item property index is out of range")
            prop = listed[index - 1]
            if prop.kind in found:
                raise MalformedAvif(f"item {item} has two {prop.kind!r} properties")
            if prop.kind == b"irot" and b"imir" in found:
                # MIAF turns before it mirrors; one decoder follows the file's order, the
                # other MIAF's, so only the order both agree on is accepted.
                raise MalformedAvif("the mirror (imir) comes before the rotation (irot)")
            found[prop.kind] = prop
        return found

    return of_item


def _associations(data: bytes, ipma: _Box) -> dict[int, list[int]]:
    """The property indices (1-based) `ipma` ties to each item, in their order."""
    version, flags = _full_box(data, ipma)
    (count,) = struct.unpack_from(">I", data, ipma.start + 4)
    if count > _MAX_BOXES:
        raise MalformedAvif("too many items")
    pos = ipma.start + 8
    id_size, index_size = (2 if version == 0 else 4), (2 if flags & 1 else 1)
    mask = 0x7FFF if index_size == 2 else 0x7F  # the top bit marks an essential property
    associations: dict[int, list[int]] = {}
    for _ in range(count):
        item = int.from_bytes(data[pos : pos + id_size], "big")
        links = data[pos + id_size]
        pos += id_size + 1
        end = pos + links * index_size
        if end > ipma.end:
            raise MalformedAvif("the property associations overrun their box")
        associations[item] = [
            int.from_bytes(data[at : at + index_size], "big") & mask
            for at in range(pos, end, index_size)
        ]
        pos = end
    return associations


def _size_and_orientation(data: bytes, found: dict[bytes, _Box]) -> tuple[int, int, int]:
    ispe = found.get(b"ispe")
    if ispe is None:
        raise MalformedAvif("the primary item has no ispe (size) property")
    if b"clap" in found:
        # One decoder crops to the clean aperture and the other does not: refused, so the
        # size checked is the size both decode.
        raise MalformedAvif("a clean-aperture (clap) crop is not supported")
    if ispe.end - ispe.start < 12:
        raise MalformedAvif("the ispe property is truncated")
    width, height = struct.unpack_from(">II", data, ispe.start + 4)
    turns = _first_byte(data, found.get(b"irot")) & 0x03
    if b"imir" not in found:
        return width, height, _TURNED[turns]
    axis = _first_byte(data, found[b"imir"]) & 0x01
    return width, height, _TURNED_THEN_FLIPPED[(turns + 2 * axis) % 4]


def _first_byte(data: bytes, prop: _Box | None) -> int:
    """The one-byte body of an irot or imir property; 0 (no turn) when there is none."""
    if prop is None:
        return 0
    if prop.end <= prop.start:
        raise MalformedAvif(f"the {prop.kind!r} property is empty")
    return data[prop.start]
