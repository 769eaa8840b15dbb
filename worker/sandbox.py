"""Every render runs in a sandbox child: a process forked from the worker and confined.

The worker (parent) keeps Redis and never decodes an image; the child (see `confinement`) has
no network, no root, capped resources and a private temp dir per job, and talks to the parent
only through a socket pair with a small length-prefixed protocol (JSON header, raw bytes), so
the parent never unpickles anything a compromised child could write.

Forking costs far more than a text render, so a child is reused for many jobs and replaced
after `sandbox_max_jobs` renders or after any failure. The parent enforces the wall-clock
timeout; a child that hangs, crashes or runs out of memory costs one job, never the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from PIL.Image import DecompressionBombError, DecompressionBombWarning
from wand.exceptions import CacheError, ResourceLimitError

from renderq.errors import ErrorCode, RenderqError, job_error
from renderq.jobs import Job
from renderq.logs import log_event
from renderq.settings import Settings
from worker.confinement import Confinement, ConfinementError, confine, limit_cpu_seconds
from worker.render import render_job

logger = logging.getLogger("renderq.worker.sandbox")

_FRAME: Final = struct.Struct(">II")  # header length, body length
_MAX_HEADER: Final = 64 * 1024
_MAX_MESSAGE: Final = 500  # characters of a child's error message passed on to the client
_START_TIMEOUT: Final = 30.0
_EXIT_GRACE: Final = 5.0
_TEMP_PREFIX: Final = "renderq-sandbox-"


class ProtocolError(ConnectionError):
    """The other end sent something that is not a well-formed message."""


# --- the protocol -----------------------------------------------------------------------


def send_message(sock: socket.socket, header: dict[str, Any], body: bytes = b"") -> None:
    data = json.dumps(header).encode()
    sock.sendall(_FRAME.pack(len(data), len(body)) + data)
    if body:
        sock.sendall(body)


def receive_message(
    sock: socket.socket, max_body: int, deadline: float | None = None
) -> tuple[dict[str, Any], bytes]:
    """One message; EOFError if the other end closed, TimeoutError past `deadline`."""
    header_size, body_size = _FRAME.unpack(_receive_exactly(sock, _FRAME.size, deadline))
    if header_size > _MAX_HEADER or body_size > max_body:
        raise ProtocolError(f"message of {header_size}+{body_size} bytes is over the limit")
    try:
        header = json.loads(_receive_exactly(sock, header_size, deadline))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("message header is not JSON") from exc
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    return header, _receive_exactly(sock, body_size, deadline)


def _receive_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
        count = sock.recv_into(view[received:])
        if count == 0:
            raise EOFError
        received += count
    return bytes(buffer)


# --- the parent's side ------------------------------------------------------------------


@dataclass
class _Child:
    pid: int
    sock: socket.socket
    temp_root: str
    jobs: int = 0


class Sandbox:
    """The worker's handle on its current sandbox child, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._child: _Child | None = None
        self.confinement: Confinement | None = None

    def start(self) -> Confinement:
        """Start a child now (at worker start); raises ConfinementError if it cannot be safe."""
        self._current()
        assert self.confinement is not None
        return self.confinement

    def render(self, job: Job, upload: bytes | None) -> bytes:
        """The image for `job`, rendered in the child; raises a RenderqError on failure."""
        child = self._current()
        deadline = time.monotonic() + self.settings.render_timeout
        try:
            child.sock.settimeout(self.settings.render_timeout)
            send_message(child.sock, {"job": job.to_redis()}, upload or b"")
            reply, image = receive_message(child.sock, self.settings.max_result_bytes, deadline)
        except TimeoutError as exc:
            self._retire(kill=True)
            raise job_error(
                ErrorCode.RENDER_TIMEOUT,
                f"the render took longer than {self.settings.render_timeout} s",
            ) from exc
        except (EOFError, OSError) as exc:  # ProtocolError is an OSError too
            status = self._retire(kill=True)
            raise _death_error(status) from exc
        child.jobs += 1
        if not reply.get("ok"):
            self._retire()
            raise job_error(str(reply.get("code")), str(reply.get("message"))[:_MAX_MESSAGE])
        if child.jobs >= self.settings.sandbox_max_jobs:
            self._retire()
        return image

    def close(self) -> None:
        if self._child is not None:
            self._retire()

    def _current(self) -> _Child:
        if self._child is None:
            self._child = self._spawn()
        return self._child

    def _spawn(self) -> _Child:
        parent_sock, child_sock = socket.socketpair()
        temp_root = _make_temp_root(self.settings.worker_user)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            parent_sock.close()
            _child_process(child_sock, temp_root, self.settings)
        child_sock.close()
        child = _Child(pid, parent_sock, temp_root)
        try:
            ready, _ = receive_message(parent_sock, 0, time.monotonic() + _START_TIMEOUT)
        except (EOFError, OSError) as exc:
            self._stop(child, kill=True)
            raise ConfinementError(f"the sandbox child did not start: {exc!r}") from exc
        if not ready.get("ok"):
            self._stop(child, kill=True)
            raise ConfinementError(str(ready.get("message")))
        self.confinement = Confinement(str(ready["network"]), str(ready["user"]))
        log_event(logger, "sandbox_started", pid=pid, network=ready["network"], user=ready["user"])
        return child

    def _retire(self, kill: bool = False) -> int:
        """Stop the current child; the next render starts a new one. Returns its wait status."""
        child, self._child = self._child, None
        assert child is not None
        return self._stop(child, kill)

    def _stop(self, child: _Child, kill: bool) -> int:
        child.sock.close()  # an idle child reads EOF and exits
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        status = _wait(child.pid)
        shutil.rmtree(child.temp_root, ignore_errors=True)
        return status


def _make_temp_root(user: str) -> str:
    """A private directory for the child's per-job temp dirs, owned by the rendering user."""
    _remove_orphaned_temp_roots()
    root = tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-")
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
    return root


def _remove_orphaned_temp_roots() -> None:
    """Remove the temp roots of workers that were killed before they could clean up."""
    for path in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*-*"):
        owner = path.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _is_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, under another user
    return True


def _wait(pid: int) -> int:
    """Reap the child, killing it if it has not exited within the grace period."""
    deadline = time.monotonic() + _EXIT_GRACE
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _death_error(status: int) -> RenderqError:
    """Why a child died mid-job, from its wait status."""
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        return job_error(ErrorCode.RENDER_TIMEOUT, "the render used up its CPU time")
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return job_error(ErrorCode.RENDER_CRASHED, f"the renderer crashed ({name})")
    return job_error(ErrorCode.RENDER_CRASHED, "the renderer exited mid-render")


# --- the child's side -------------------------------------------------------------------


def _child_process(sock: socket.socket, temp_root: str, settings: Settings) -> None:
    """The child's whole life; it leaves only through os._exit, never back into the worker."""
    code = 1
    try:
        _close_inherited_files(keep=sock.fileno())
        code = _serve(sock, temp_root, settings)
    except BaseException:
        logger.exception("sandbox_child_failed")
    finally:
        os._exit(code)


def _close_inherited_files(keep: int) -> None:
    """Close everything but stdio and the socket: the Redis connection must not be reachable."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _serve(sock: socket.socket, temp_root: str, settings: Settings) -> int:
    try:
        confinement = confine(settings)
    except (ConfinementError, OSError) as exc:
        send_message(sock, {"ok": False, "message": str(exc)})
        return 1
    send_message(sock, {"ok": True, "network": confinement.network, "user": confinement.user})
    with _private_temp_dir(temp_root) as temp_dir:
        while True:
            try:
                header, upload = receive_message(sock, settings.max_upload_bytes)
            except EOFError:
                return 0
            reply, image = _render_one(header, upload, settings)
            _empty(temp_dir)  # what one job left, the next never sees
            send_message(sock, reply, image)


def _render_one(
    header: dict[str, Any], upload: bytes, settings: Settings
) -> tuple[dict[str, Any], bytes]:
    job = Job.from_redis(header["job"])
    limit_cpu_seconds(settings.render_timeout)
    try:
        return {"ok": True}, render_job(job, settings, upload or None)
    except RenderqError as exc:
        return _failure(exc.code, exc.message)
    except MemoryError:
        return _failure(ErrorCode.RENDER_MEMORY, "the render ran out of memory")
    except (ResourceLimitError, CacheError) as exc:
        # Out of memory, map or pixel-cache disk (RLIMIT_FSIZE) inside ImageMagick.
        return _failure(ErrorCode.RENDER_MEMORY, f"ImageMagick hit a resource limit: {exc}")
    except (DecompressionBombError, DecompressionBombWarning) as exc:
        return _failure(ErrorCode.IMAGE_TOO_LARGE, str(exc))
    except Exception:
        logger.exception("render_crashed", extra={"fields": {"job_id": job.id}})
        return _failure(ErrorCode.RENDER_FAILED, "the renderer failed unexpectedly")


def _failure(code: str, message: str) -> tuple[dict[str, Any], bytes]:
    return {"ok": False, "code": str(code), "message": message}, b""


@contextlib.contextmanager
def _private_temp_dir(root: str) -> Iterator[str]:
    """The child's only temp dir, for Python and ImageMagick alike; removed when it exits.

    Emptied after every job rather than made anew: the same guarantee (each job starts in an
    empty, private dir) for a directory scan instead of a mkdtemp and rmtree per job.
    """
    path = tempfile.mkdtemp(dir=root)
    os.environ.update(TMPDIR=path, MAGICK_TEMPORARY_PATH=path)
    tempfile.tempdir = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _empty(path: str) -> None:
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
