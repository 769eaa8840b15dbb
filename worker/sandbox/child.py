"""A render child: forked by the zygote, confined further, then it renders and reports.

An image child decodes one client's bytes, so it renders exactly one job and is killed:
no byte of one client's upload or result ever sits in a process that later renders another
job. Comparing a job's two results (for a tap, see `worker.tap`) is an image child's one job
too. The text child renders many text jobs, whose input is validated text drawn with
allowlisted fonts, and never an image job (see the README's Security section).

Its stdin, stdout and stderr are /dev/null: what a compromised child could write there would
reach the worker's logs. It tells the worker everything, failures included, as messages.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from PIL.Image import DecompressionBombError, DecompressionBombWarning
from wand.exceptions import CacheError, ResourceLimitError

from renderq.errors import ErrorCode, RenderqError
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from worker.render import compare_images, render_job
from worker.sandbox import confinement
from worker.sandbox.confinement import ConfinementError
from worker.sandbox.protocol import receive_message, send_message
from worker.sandbox.seccomp import load_program

PRIVATE_TMP: Final = "/tmp"
_MAX_DETAIL: Final = 2000  # characters of a failure's detail passed on for the worker's log
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_MMAP_THRESHOLD_MAX: Final = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
_NEVER_TRIM: Final = 2**31 - 1


@dataclass(frozen=True)
class ChildConfig:
    settings: Settings
    lane: JobKind  # an image child renders one job; the text child many text jobs
    zygote_pid: int
    zygote_mounts: str  # the zygote's mount namespace, which this child must leave
    zygote_filters: int  # the zygote's seccomp filters; a child loads one more
    scratch: str | None  # a directory of its own when it cannot mount its own /tmp
    seccomp_program: bytes  # the child filter, compiled once by the zygote


def run_child(sock: socket.socket, config: ChildConfig) -> NoReturn:
    """The child's whole life; it leaves only through os._exit, never back into the zygote."""
    code = 1
    try:
        _keep_only(sock.fileno())
        report = confine(config)
        send_message(sock, {"ok": True, "layers": report})
        _serve(sock, config)
        code = 0
    except BaseException:  # nowhere to report it: the worker sees the exit
        code = 1
    finally:
        os._exit(code)


def confine(config: ChildConfig) -> confinement.Report:
    """This child's own layers, in order, then its report on all of them."""
    settings = config.settings
    confinement.die_with_parent()
    if os.getppid() != config.zygote_pid:
        raise ConfinementError("the zygote died before the child started")
    temp = _private_tmp(config)
    if temp != PRIVATE_TMP:  # the zygote set the usual one before forking
        os.environ.update(TMPDIR=temp, MAGICK_TEMPORARY_PATH=temp)
        tempfile.tempdir = temp
    # The hard CPU limit (SIGKILL) bounds the child's whole life, a second past the soft
    # one (SIGXCPU) of its last job, so a render that uses up its CPU time says so.
    lifetime = 1 if config.lane is JobKind.IMAGE else settings.sandbox_max_jobs
    confinement.limit_child(settings, (settings.render_timeout + 1) * lifetime + 1)
    confinement.drop_capabilities()
    confinement.forbid_new_privileges()
    confinement.set_dumpable(False)
    confinement.die_with_parent()  # once more: the new user namespace changed the identity
    load_program(config.seccomp_program)
    _keep_freed_memory()
    return confinement.verify_child(settings, config.zygote_mounts, config.zygote_filters)


def _keep_freed_memory() -> None:
    """Have malloc keep what a render frees, for the rest of the render to reuse.

    By default glibc returns large blocks to the kernel as they are freed, and each new one
    costs a page fault per 4 KiB touched: decoding, converting and resizing one photo makes
    thousands, and a fresh child has nothing to reuse. The child is short-lived, and its
    address space is capped anyway.
    """
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)


def _private_tmp(config: ChildConfig) -> str:
    try:
        confinement.enter_private_tmp(config.settings.render_file_mb)
    except OSError:
        if config.scratch is None:
            raise
        return config.scratch
    return PRIVATE_TMP


def use_private_tmp() -> None:
    """Point Python and ImageMagick at the /tmp each child mounts for itself (called by the
    zygote, so that children need not)."""
    os.environ.update(TMPDIR=PRIVATE_TMP, MAGICK_TEMPORARY_PATH=PRIVATE_TMP)
    tempfile.tempdir = PRIVATE_TMP


def _keep_only(fd: int) -> None:
    """Close every inherited descriptor but the socket; stdio goes to /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    for stdio in (0, 1, 2):
        os.dup2(null, stdio)
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the child's life


def _serve(sock: socket.socket, config: ChildConfig) -> None:
    settings = config.settings
    rendered = False
    while True:
        try:
            header, body = receive_message(sock, _max_body(config))
        except EOFError:
            return
        if "hook" in header:
            send_message(sock, _run_hook(str(header["hook"]), body, settings))
            continue
        if rendered and config.lane is JobKind.IMAGE:
            send_message(sock, _failure(ErrorCode.RENDER_FAILED, "an image child renders once"))
            continue
        if config.lane is JobKind.TEXT:
            confinement.allow_cpu_seconds(settings.render_timeout)
        reply, image = _answer(header, body, config)
        rendered = True
        send_message(sock, reply, image)


def _max_body(config: ChildConfig) -> int:
    """An image child may be sent two results to compare, each up to the largest result."""
    settings = config.settings
    if config.lane is JobKind.TEXT:
        return settings.max_upload_bytes
    return max(settings.max_upload_bytes, 2 * settings.max_result_bytes)


def _answer(
    header: dict[str, Any], body: bytes, config: ChildConfig
) -> tuple[dict[str, Any], bytes]:
    """A render's reply, or a comparison's: only an image child compares, since both images
    may hold a client's pixels, and it then renders nothing else."""
    if "compare" not in header:
        return render_one(header.get("render", {}), body, config.settings)
    if config.lane is not JobKind.IMAGE:
        return _failure(ErrorCode.RENDER_FAILED, "only an image child compares"), b""
    return compare_one(header["compare"], body)


def render_one(
    job: dict[str, Any], upload: bytes, settings: Settings
) -> tuple[dict[str, Any], bytes]:
    """The reply header and image for one job; every failure becomes a reply."""
    kind, request = str(job.get("kind")), job.get("request")
    return _guarded(lambda: ({"ok": True}, render_job(kind, request, upload or None, settings)))


def compare_one(request: Any, body: bytes) -> tuple[dict[str, Any], bytes]:
    """The reply to a comparison: the body is the first image (`first` bytes long), then
    the second; either may be empty (that side has no image)."""
    split = request.get("first") if isinstance(request, dict) else None
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= len(body):
        return _failure(ErrorCode.RENDER_FAILED, "a comparison needs the first's length"), b""
    first, second = body[:split], body[split:]
    return _guarded(
        lambda: ({"ok": True, "comparison": compare_images(first, second).to_wire()}, b"")
    )


def _guarded(work: Callable[[], tuple[dict[str, Any], bytes]]) -> tuple[dict[str, Any], bytes]:
    """What `work` answers; every failure becomes a reply (decoders' limits included)."""
    try:
        return work()
    except RenderqError as exc:
        return _failure(exc.code, exc.message), b""
    except MemoryError:
        return _failure(ErrorCode.RENDER_MEMORY, "the render ran out of memory"), b""
    except (ResourceLimitError, CacheError) as exc:
        # Out of memory, map or pixel-cache disk (RLIMIT_FSIZE) inside ImageMagick.
        message = f"ImageMagick hit a resource limit: {exc}"
        return _failure(ErrorCode.RENDER_MEMORY, message), b""
    except (DecompressionBombError, DecompressionBombWarning) as exc:
        return _failure(ErrorCode.IMAGE_TOO_LARGE, str(exc)), b""
    except Exception:  # any other failure is renderq's, reported with detail
        detail = traceback.format_exc()[-_MAX_DETAIL:]
        failure = _failure(ErrorCode.RENDER_FAILED, "the renderer failed unexpectedly")
        failure["detail"] = detail
        return failure, b""


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "code": str(code), "message": message}


def _run_hook(code: str, data: bytes, settings: Settings) -> dict[str, Any]:
    """Tests only: run `code` here, after confinement, as a compromised decoder would run.

    `code` sees the message's body as `data` and fills the dict `report`, which goes back to
    the test. The real entry points refuse to start with `RENDERQ_SANDBOX_TEST_HOOK`, so
    production children answer with a refusal.
    """
    if not settings.sandbox_test_hook:
        return {"ok": False, "error": "test hooks are disabled"}
    namespace: dict[str, Any] = {"report": {}, "data": data}
    try:
        exec(code, namespace)  # the test hook's whole purpose
    except Exception:  # the test reads what went wrong
        return {"ok": False, "error": traceback.format_exc()[-_MAX_DETAIL:]}
    return {"ok": True, "report": namespace["report"]}
