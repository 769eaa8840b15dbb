"""Rules on text a client sends that more than one field shares: no ImageMagick syntax in
text to draw, and whole numbers read strictly from query, form and header text.

The fields themselves are declared in `renderq.fields`.
"""

from __future__ import annotations

import re
from typing import Final

# Coder prefixes that make ImageMagick read, run or fetch something when a string is taken as
# an image name ("label:@/etc/passwd", "msl:x.msl", "ephemeral:..."). renderq never passes text
# that way, but refuses the shapes anyway, so one slip elsewhere cannot turn text into a file
# read.
_CODER_PREFIX: Final = re.compile(
    r"\s*(label|caption|text|txt|msl|mvg|svg|msvg|rsvg|ephemeral|url|https?|ftp|file|inline|"
    r"data|pango|vid|xc|canvas|gradient|radial-gradient|pattern|plasma|fractal|info|tmp|fd|"
    r"mpr|mpri|miff|magick|null|ps|eps|epi|ept|pdf|xps|pcl|histogram|clipboard|x|show|win|"
    r"print|scan|hald|dot|gv|stegano|tile|read|rgb|gray|cmyk|json|yaml|html|mat):",
    re.IGNORECASE,
)
# Percent escapes (`%w`, `%[exif:*]`) expand image properties where ImageMagick interprets text.
_PERCENT_ESCAPE: Final = re.compile(r"%[A-Za-z\[]")


def imagemagick_syntax(text: str) -> str | None:
    """Why `text` looks like ImageMagick syntax rather than text, or None when it does not."""
    if text.lstrip().startswith("@"):
        return "must not start with '@' (ImageMagick reads a file named by what follows)"
    prefix = _CODER_PREFIX.match(text)
    if prefix is not None:
        return f"must not start with the ImageMagick coder prefix {prefix.group(1)!r}:"
    if _PERCENT_ESCAPE.search(text):
        return "must not hold ImageMagick percent escapes such as '%w' or '%[...]'"
    return None


_WHOLE_NUMBER: Final = re.compile(r"[0-9]{1,9}")


def whole_number(text: str) -> int | None:
    """`text` as a whole number when it is 1 to 9 ASCII digits, else None.

    `str.isdigit` accepts "²" and other digits `int` cannot read, and `int` refuses more
    than 4300 digits: text from a query, a form or a header is checked with this instead.
    """
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None
