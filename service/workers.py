"""What the front makes of the live workers' reports (see `worker.lease`): one reading of
the sandbox's isolation, shared by `/healthz` and the dashboard so they never disagree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Isolation:
    """`isolated` when every live worker's sandbox has every layer, `weakened` (with the
    layers missing somewhere) when one lacks any, `no workers` when none is alive."""

    status: str
    weakened: list[str]


def weakened_layers(report: Mapping[str, Any]) -> list[str]:
    """The sandbox layers one worker reports as not in force (anything but "ok")."""
    return sorted(layer for layer, why in report.get("sandbox", {}).items() if why != "ok")


def isolation(reports: Iterable[Mapping[str, Any]]) -> Isolation:
    reports = list(reports)
    weakened = sorted({layer for report in reports for layer in weakened_layers(report)})
    status = "no workers" if not reports else "weakened" if weakened else "isolated"
    return Isolation(status, weakened)
