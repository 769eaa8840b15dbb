"""The `renderq` command line, run as the installed console script against the real stack:
plain output in a pipe, and the progress bar in a real terminal (tmux, `capture-pane`),
a batch with a hostile file among the images, and Ctrl-C in the middle of one.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from renderq.keys import Keys
from tests.images import decode
from tests.processes import wait_until
from tests.test_client import Stack, running_stack

RENDERQ = Path(sys.executable).with_name("renderq")  # the console script set-up installed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert RENDERQ.exists(), "no renderq console script: run deploy/setup.sh"
    with running_stack(tmp_path_factory.mktemp("cli")) as running:
        yield running


def renderq(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in a pipe: not a terminal, so plain output."""
    return subprocess.run(
        [str(RENDERQ), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_photos(directory: Path, count: int) -> list[Path]:
    directory.mkdir(exist_ok=True)
    paths = []
    for n in range(count):
        out = io.BytesIO()
        Image.new("RGB", (96, 64), (n * 5 % 256, 80, 160)).save(out, "JPEG")
        path = directory / f"photo-{n:02d}.jpg"
        path.write_bytes(out.getvalue())
        paths.append(path)
    return paths


def hostile_png() -> bytes:
    """A PNG whose header is sound (the front accepts it) and whose pixels are cut off
    halfway: the render must fail with `invalid_image`, in its sandbox."""
    out = io.BytesIO()
    Image.effect_noise((64, 64), 50).save(out, "PNG")
    data = out.getvalue()
    return data[: len(data) // 2]


@dataclass
class Terminal:
    """A tmux session of 120x30 running one command; its screen, and its exit status."""

    socket: Path
    status_file: Path

    @classmethod
    def run(cls, command: list[str], cwd: Path) -> Terminal:
        terminal = cls(cwd / "tmux.sock", cwd / "status")
        # The shell traps SIGINT (a handler, not "ignore", so the command gets it as usual)
        # to live on after a Ctrl-C, write the status and keep the screen.
        script = (
            f"trap true INT; {shlex.join(command)}; echo $? > {terminal.status_file}; sleep 600"
        )
        terminal.tmux("new-session", "-d", "-x", "120", "-y", "30", "-c", str(cwd), script)
        return terminal

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def status(self, timeout: float = 45) -> int:
        wait_until(self.status_file.exists, timeout, "the command to exit in tmux")
        wait_until(lambda: self.status_file.read_text().strip() != "", 5, "its status")
        return int(self.status_file.read_text())

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal_runner(tmp_path: Path) -> Iterator[list[Terminal]]:
    terminals: list[Terminal] = []
    yield terminals
    for terminal in terminals:
        terminal.close()


def test_a_batch_in_a_terminal_writes_the_good_and_reports_the_hostile(
    stack: Stack, tmp_path: Path, terminal_runner: list[Terminal]
) -> None:
    photos = write_photos(tmp_path / "in", 49)
    (tmp_path / "in" / "hostile.png").write_bytes(hostile_png())
    inputs = [str(path.relative_to(tmp_path)) for path in photos] + ["in/hostile.png"]
    command = [str(RENDERQ), "image", *inputs, "--resize", "32x32", "--fit", "cover"]
    command += ["-o", "out/", "--url", stack.base, "--concurrency", "8"]
    terminal = Terminal.run(command, tmp_path)
    terminal_runner.append(terminal)
    status = terminal.status()
    screen = terminal.screen()
    assert status == 1, screen
    assert "rendering" in screen and "50/50" in screen, screen
    assert "1 failed" in screen, screen
    assert "in/hostile.png" in screen and "invalid_image" in screen, screen
    assert "49 of 50 written to out, 1 failed" in screen, screen
    written = sorted((tmp_path / "out").iterdir())
    assert [path.name for path in written] == [f"{path.stem}.jpg" for path in photos]
    assert all(decode(path.read_bytes()).size == (32, 32) for path in written)


def test_ctrl_c_stops_and_names_the_jobs_still_queued(
    stack: Stack, tmp_path: Path, terminal_runner: list[Terminal]
) -> None:
    photos = write_photos(tmp_path / "in", 3)
    keys = Keys()
    before = set(stack.redis.keys(keys.job("*")))
    with stack.worker_paused():
        command = [str(RENDERQ), "image", *map(str, photos), "-o", "out", "--url", stack.base]
        terminal = Terminal.run(command, tmp_path)
        terminal_runner.append(terminal)

        def queued() -> set[str]:
            new = set(stack.redis.keys(keys.job("*"))) - before
            names = {key.decode() if isinstance(key, bytes) else key for key in new}
            return {name.rpartition(":")[2] for name in names}

        wait_until(lambda: len(queued()) == 3, 20, "the three jobs to be queued")
        terminal.tmux("send-keys", "C-c")
        status = terminal.status(20)
        screen = terminal.screen()
        assert status == 130, screen
        assert "interrupted: 3 jobs still queued" in screen, screen
        for job_id in queued():
            assert f"still queued: {job_id}" in screen, screen
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_commands_in_plain_output(stack: Stack, tmp_path: Path) -> None:
    url = ["--url", stack.base]
    text = renderq("text", "Hello", "-o", "hello.png", "--size", "40", *url, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("wrote hello.png (png, ")
    assert decode((tmp_path / "hello.png").read_bytes()).format == "PNG"
    # The URL may come from the environment, and --json may come before the command.
    env = {"RENDERQ_URL": stack.base}
    webp = renderq("--json", "text", "Hi", "-o", "hi.webp", cwd=tmp_path, env=env)
    done = json.loads(webp.stdout)
    assert (done["content_type"], done["output"]) == ("image/webp", "hi.webp")
    job_id = done["job"]
    status = renderq("status", job_id, "--json", *url, cwd=tmp_path)
    assert json.loads(status.stdout)["status"] == "done"
    assert "status: done" in renderq("status", job_id, *url, cwd=tmp_path).stdout
    again = renderq("wait", job_id, "-o", "again.webp", *url, cwd=tmp_path)
    assert (tmp_path / "again.webp").read_bytes() == (tmp_path / "hi.webp").read_bytes(), again
    cancel = renderq("cancel", job_id, *url, cwd=tmp_path)
    assert cancel.returncode == 1 and "job_not_cancellable" in cancel.stderr
    unknown = renderq("status", "no-such-job", *url, cwd=tmp_path)
    assert unknown.returncode == 1 and "job_not_found" in unknown.stderr
    (tmp_path / "photo.jpg").write_bytes(write_photos(tmp_path / "one", 1)[0].read_bytes())
    one = ["photo.jpg", "--resize", "40x40", "--fit", "cover", "--rotate", "90", "-o", "t.webp"]
    thumb = renderq("image", *one, *url, cwd=tmp_path)
    assert thumb.returncode == 0, thumb.stderr
    assert decode((tmp_path / "t.webp").read_bytes()).format == "WEBP"
    batch = renderq(
        "image", "photo.jpg", "t.webp", "--resize", "20", "-o", "many", "--json", *url, cwd=tmp_path
    )
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert batch.returncode == 0, batch.stderr
    assert sorted(line["output"] for line in lines[:2]) == ["many/photo.jpg", "many/t.webp"]
    assert lines[2]["summary"]["done"] == 2
    queue = renderq("queue", *url, cwd=tmp_path)
    assert "depth: " in queue.stdout and "worker\talive" in queue.stdout, queue.stderr
    assert json.loads(renderq("queue", "--json", *url, cwd=tmp_path).stdout)["queue"]["depth"] >= 0
    dead = renderq("dead-letters", "list", "--json", *url, cwd=tmp_path)
    assert json.loads(dead.stdout) == []
    no_token = renderq("dead-letters", "requeue", "--all", *url, cwd=tmp_path)
    assert no_token.returncode == 2 and "RENDERQ_ADMIN_TOKEN" in no_token.stderr
    bad = renderq("image", "photo.jpg", "--flip", "diagonal", "-o", "x.png", cwd=tmp_path)
    assert bad.returncode == 2
    # A field the client itself refuses, before sending, is bad usage too.
    color = renderq("text", "Hi", "--color", "url(#x)", "-o", "x.png", *url, cwd=tmp_path)
    assert color.returncode == 2 and "invalid_color" in color.stderr, color.stderr
    for command in ([], ["text"], ["image"], ["queue"], ["dead-letters", "requeue"]):
        shown = renderq(*command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and "examples:" in shown.stdout, command
