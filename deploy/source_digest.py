"""Print a digest of the code set-up installs into /opt/renderq, to tell when it is stale.

Set-up reinstalls when the digest of the checkout differs from the installed one, and the
test suite refuses to run against an installed copy that differs from the code under test.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

PACKAGES = ("renderq", "service", "worker")
# Besides the Python: the dashboard's page (`service/dashboard.html`, `.js`).
SUFFIXES = (".py", ".html", ".js")


def source_digest(root: Path) -> str:
    """SHA-256 over the name and content of every installed source file, in a fixed order."""
    files = [root / "pyproject.toml"]
    for package in PACKAGES:
        files += sorted(path for path in (root / package).rglob("*") if path.suffix in SUFFIXES)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


if __name__ == "__main__":
    sys.stdout.write(source_digest(Path(sys.argv[1] if len(sys.argv) > 1 else ".")) + "\n")
