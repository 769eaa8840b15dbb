"""The results as a plain text table, one row per measurement."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass

COLUMNS = ("measurement", "jobs", "errors", "seconds", "jobs/s", "p50 ms", "p99 ms", "vs pool")


@dataclass(frozen=True)
class Row:
    measurement: str
    jobs: int
    errors: int
    seconds: float
    per_second: float
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    ratio: float = math.nan

    def cells(self) -> list[str]:
        numbers = (self.seconds, self.per_second, self.p50_ms, self.p99_ms)
        return [
            self.measurement,
            str(self.jobs),
            str(self.errors),
            *(_number(n) for n in numbers),
            "-" if math.isnan(self.ratio) else f"{self.ratio:.2f}",
        ]


def machine_line() -> str:
    """Which machine produced the numbers: they mean little without it."""
    return (
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


def format_table(rows: list[Row]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    table = [list(COLUMNS), *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [_line(cells, widths) for cells in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
    return "  ".join([first, *rest])


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def say(tool: str, message: str) -> None:
    """What a benchmark is doing, on stderr: stdout is left to its results."""
    print(f"{tool}: {message}", file=sys.stderr, flush=True)
