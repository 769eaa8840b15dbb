"""Headless Chromium (Debian's `chromium`), driven over the DevTools protocol: open a page,
evaluate JavaScript in it, take a screenshot. Just what the dashboard's test needs."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
from websockets.sync.client import ClientConnection, connect

from tests.processes import STOP_TIMEOUT, wait_until

WIDTH, HEIGHT = 1280, 900


class Page:
    """One tab, spoken to over its DevTools websocket."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result, skipping the events that come between."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=30))
            if message.get("id") != self._next_id:
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def open(self, url: str) -> None:
        """Go to `url` and wait until it has loaded (its deferred scripts have run)."""
        self.call("Page.navigate", url=url)

        def loaded() -> bool:
            where = self.evaluate("[location.href, document.readyState]")
            return bool(where == [url, "complete"])

        wait_until(loaded, 15, f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-able), awaited if it is a promise."""
        reply = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page, however long, at the window's width."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip
        )
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A headless Chromium with a fresh profile in `profile`, and its first tab."""
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium is not installed: run `make test`, which installs it")
    arguments = [
        binary,
        "--headless",
        # The tests run as root (CI does), and Chromium's own sandbox refuses to start as
        # root; the only page it opens is the dashboard the test itself serves.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",  # a container's /dev/shm is small
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",  # a free port, written to DevToolsActivePort
        "about:blank",
    ]
    with (profile.parent / "chromium.log").open("ab") as log:
        process = subprocess.Popen(arguments, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        with connect(_page_socket(profile, process), max_size=None) as socket:
            yield Page(socket)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _page_socket(profile: Path, process: subprocess.Popen[bytes]) -> str:
    """The websocket address of the browser's first tab, once it listens."""
    port_file = profile / "DevToolsActivePort"  # its port, then its path: two lines

    def listening() -> bool:
        return port_file.exists() and len(port_file.read_text().split()) == 2

    wait_until(listening, 30, "Chromium to listen for DevTools")
    port = port_file.read_text().split()[0]
    targets: list[dict[str, Any]] = []

    def page_listed() -> bool:
        if process.poll() is not None:
            raise AssertionError("Chromium exited; see chromium.log")
        targets[:] = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        return any(target["type"] == "page" for target in targets)

    wait_until(page_listed, 30, "Chromium's first tab")
    url: str = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
    return url
