"""`python -m bench.scripts_sheet [PATH]`: the README's contact sheet of every writing system
on both engines (`docs/scripts.png` by default), drawn in this process with the fonts the
set-up installs; the test suite saves the same sheet as an artifact."""

from __future__ import annotations

import sys
from pathlib import Path

from renderq.settings import Settings
from tests.script_samples import contact_sheet


def main(argv: list[str]) -> None:
    path = Path(argv[0] if argv else "docs/scripts.png")
    contact_sheet(Settings.from_env({})).save(path, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1:])
