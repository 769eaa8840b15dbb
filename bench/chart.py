"""A two-panel PNG chart drawn with Pillow: lines on the left, grouped bars on the right.

Enough for the benchmark's figures without a plotting dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont

PANEL: Final = (560, 380)
MARGIN: Final = (64, 48, 24, 56)  # left, top, right, bottom, inside each panel
COLOURS: Final = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
FONT_PATH: Final = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
GRID: Final = (225, 225, 225)
INK: Final = (40, 40, 40)
TICKS: Final = 5


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT_PATH, size)
    except OSError:
        return ImageFont.load_default()


def nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** int(f"{value:e}".split("e")[1])
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


class GrowthChart:
    """Panels are added left to right; `save` writes them side by side."""

    def __init__(self) -> None:
        self.panels: list[Image.Image] = []
        self.text = _font(13)
        self.title = _font(15)

    def lines(self, title: str, series: dict[str, list[tuple[float, float]]]) -> None:
        """One line per series through its (x, y) points, both axes from 0; the x axis is
        marked at the points' x."""
        points = [point for values in series.values() for point in values]
        x_top = max(x for x, _ in points)
        y_top = nice_top(max(y for _, y in points))
        image, draw, box = self._panel(title, y_top)
        for index, (name, values) in enumerate(series.items()):
            colour = COLOURS[index % len(COLOURS)]
            xy = [self._at(box, x / x_top, y / y_top) for x, y in values]
            draw.line(xy, fill=colour, width=3)
            for x, y in xy:
                draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
            self._legend(draw, box, index, name, colour)
        for tick in sorted({x for x, _ in points}):  # the x of every point, as measured
            x, y = self._at(box, tick / x_top, 0)
            draw.text((x, y + 6), f"{tick:g}", fill=INK, font=self.text, anchor="mt")
        self.panels.append(image)

    def bars(self, title: str, groups: dict[str, list[float]], labels: tuple[str, ...]) -> None:
        """One group of bars per key, one bar per label, each with its value over it."""
        y_top = nice_top(max(v for values in groups.values() for v in values))
        image, draw, box = self._panel(title, y_top)
        left, _, right, bottom = box
        slot = (right - left) / len(groups)
        width = slot * 0.7 / len(labels)
        for group, (name, values) in enumerate(groups.items()):
            start = left + slot * group + slot * 0.15
            for index, value in enumerate(values):
                x0 = start + index * width
                _, y = self._at(box, 0, value / y_top)
                draw.rectangle((x0, y, x0 + width - 4, bottom), fill=COLOURS[index])
                draw.text(
                    (x0 + width / 2 - 2, y - 4),
                    f"{value:.0f}",
                    fill=INK,
                    font=self.text,
                    anchor="mb",
                )
            draw.text(
                (left + slot * (group + 0.5), bottom + 6),
                name,
                fill=INK,
                font=self.text,
                anchor="mt",
            )
        for index, label in enumerate(labels):
            self._legend(draw, box, index, label, COLOURS[index])
        self.panels.append(image)

    def save(self, path: Path) -> None:
        canvas = Image.new("RGB", (PANEL[0] * len(self.panels), PANEL[1]), "white")
        for index, panel in enumerate(self.panels):
            canvas.paste(panel, (PANEL[0] * index, 0))
        canvas.save(path, "PNG", optimize=True)

    def _panel(
        self, title: str, y_top: float
    ) -> tuple[Image.Image, ImageDraw.ImageDraw, tuple[int, int, int, int]]:
        """A white panel with its title, the plot box and horizontal grid lines with values."""
        image = Image.new("RGB", PANEL, "white")
        draw = ImageDraw.Draw(image)
        box = (MARGIN[0], MARGIN[1], PANEL[0] - MARGIN[2], PANEL[1] - MARGIN[3])
        draw.text((PANEL[0] // 2, 16), title, fill=INK, font=self.title, anchor="mt")
        for tick in range(TICKS + 1):
            _, y = self._at(box, 0, tick / TICKS)
            draw.line((box[0], y, box[2], y), fill=GRID)
            draw.text(
                (box[0] - 6, y), f"{y_top * tick / TICKS:g}", fill=INK, font=self.text, anchor="rm"
            )
        draw.line((box[0], box[1], box[0], box[3]), fill=INK)
        draw.line((box[0], box[3], box[2], box[3]), fill=INK)
        return image, draw, box

    def _legend(
        self,
        draw: ImageDraw.ImageDraw,
        box: tuple[int, int, int, int],
        index: int,
        name: str,
        colour: tuple[int, int, int],
    ) -> None:
        x, y = box[0] + 12, box[1] + 6 + index * 18
        draw.rectangle((x, y + 2, x + 12, y + 12), fill=colour)
        draw.text((x + 18, y), name, fill=INK, font=self.text)

    @staticmethod
    def _at(box: tuple[int, int, int, int], x: float, y: float) -> tuple[float, float]:
        """Where the fractions (x, y) of the axes' ranges fall in the plot box."""
        left, top, right, bottom = box
        return left + x * (right - left), bottom - y * (bottom - top)
