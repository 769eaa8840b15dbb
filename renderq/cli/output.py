"""Where the command line writes: rich tables and colour on a terminal, plain lines when
stdout is a pipe or a file (for grep and logs), one JSON document per line with `--json`.

Errors always go to stderr, one line each.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from renderq.client import RenderqError


class Output:
    def __init__(self, as_json: bool = False, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)

    @property
    def fancy(self) -> bool:
        """Rich output: a terminal, and no `--json`."""
        return self.console.is_terminal and not self.as_json

    def json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, default=str) + "\n")
        sys.stdout.flush()

    def line(self, text: str, style: str | None = None) -> None:
        """One line of text (never markup: file names and messages are shown as they are)."""
        if self.fancy:
            self.console.print(escape(text), style=style)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def fields(self, title: str, pairs: Sequence[tuple[str, Any]]) -> None:
        """Named values: a two-column table, or `name: value` lines."""
        if not self.fancy:
            for name, value in pairs:
                self.line(f"{name}: {_shown(value)}")
            return
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for name, value in pairs:
            table.add_row(escape(name), escape(_shown(value)))
        self.console.print(table)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Rows: a table, or a header line and tab-separated rows."""
        if not self.fancy:
            self.line("\t".join(columns))
            for row in rows:
                self.line("\t".join(_shown(value) for value in row))
            return
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(_shown(value)) for value in row))
        self.console.print(table)

    def error(self, text: str) -> None:
        if self.errors.is_terminal:
            self.errors.print(escape(f"renderq: {text}"), style="red")
        else:
            sys.stderr.write(f"renderq: {text}\n")
            sys.stderr.flush()


def describe(error: RenderqError) -> str:
    """An error as one line: its code, message and field, and the job it is about."""
    text = f"{error.code}: {error.message}"
    if error.field:
        text += f" (field {error.field})"
    return text


def error_json(error: RenderqError | OSError) -> dict[str, Any]:
    if isinstance(error, RenderqError):
        return {"code": error.code, "message": error.message, "field": error.field}
    return {"code": "os_error", "message": str(error), "field": None}


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
