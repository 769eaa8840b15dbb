"""Peak resident memory of the front, the workers and their sandboxes, under load.

The front and the workers live through the whole run, so the kernel's own high-water mark
(`VmHWM`) is exact for them. A sandbox child lives for one image job, gone before anyone could
read its high-water mark, so the processes below the workers are sampled every 20 ms
instead (a scan of /proc, about 2 ms): a peak between two samples can be missed, never overstated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
SAMPLE_INTERVAL: Final = 0.02


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def descendants(roots: Iterable[int]) -> set[int]:
    """Every process below `roots` (not the roots), from each process's parent in /proc."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name, in parentheses, may hold spaces: the fields after it are fixed.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class PeakMemory:
    """Samples, in a thread, the largest resident set of any process below `workers`."""

    def __init__(self, front: int, workers: list[int]) -> None:
        self.front = front
        self.workers = workers
        self.sandbox_peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peaks_mib(self) -> dict[str, float]:
        """Front, largest worker, largest sandbox process: peak resident memory in MiB."""
        worker = max((status_kib(pid, "VmHWM") for pid in self.workers), default=0)
        return {
            "front": status_kib(self.front, "VmHWM") / 1024,
            "worker": worker / 1024,
            "sandbox process": self.sandbox_peak_kib / 1024,
        }

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            for pid in descendants(self.workers):
                self.sandbox_peak_kib = max(self.sandbox_peak_kib, status_kib(pid, "VmRSS"))
