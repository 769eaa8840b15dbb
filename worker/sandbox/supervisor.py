"""The worker's side of the sandbox: start it, hand each job to a child, enforce the timeout.

The worker keeps Redis and never decodes, probes or holds an upload longer than it takes to
send it to a child. Image jobs each get a fresh child, which is killed once it has answered;
the next one is forked by the zygote while the worker stores the result, so it is ready when
the next image job comes. Text jobs share one long-lived child, replaced after
`sandbox_max_jobs` renders or any failure.

The worker enforces the wall-clock timeout: a child that runs out of time, memory or crashes
costs its job, never the worker. The children run as another user, so only the zygote, their
parent, can kill them: the worker asks it to.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from renderq.errors import ErrorCode, RenderqError, job_error
from renderq.jobs import Job
from renderq.logs import log_event
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from worker.comparison import MalformedComparison, PixelComparison
from worker.sandbox.confinement import OK, ConfinementError, Report
from worker.sandbox.launcher import START_TIMEOUT, Zygote, launch_zygote
from worker.sandbox.protocol import receive_message, receive_packet, send_message, send_packet

logger = logging.getLogger("renderq.worker.sandbox")

# An upload, or a function that loads it (called as late as possible).
UploadSource = bytes | Callable[[], bytes | None] | None

_MAX_MESSAGE: Final = 500  # characters of a child's error message passed on to the client
_HOOK_TIMEOUT: Final = 60.0


@dataclass
class _Child:
    id: int
    lane: str
    sock: socket.socket
    jobs: int = 0
    ready: bool = False  # its report of its layers has been read and checked


class Sandbox:
    """The worker's handle on its sandbox: the zygote and the children it forked for us."""

    def __init__(self, settings: Settings, worker_uid: int | None = None) -> None:
        self.settings = settings
        self.worker_uid = os.getuid() if worker_uid is None else worker_uid
        self.layers: Report = {}
        self._zygote: Zygote | None = None
        self._children: dict[str, _Child] = {}
        self._spawn_pending = False
        # Children the zygote gave us so far, for the metrics.
        self.children_started = 0

    @property
    def weakened(self) -> dict[str, str]:
        """The layers that are not in place, with why."""
        return {layer: why for layer, why in self.layers.items() if why != OK}

    def start(self) -> Report:
        """Start the zygote and both children; ConfinementError if a layer is missing and
        `RENDERQ_SANDBOX_ALLOW_WEAK` is not set."""
        self._zygote = launch_zygote(self.settings, self.worker_uid)
        self.layers = dict(self._zygote.layers)
        try:
            for lane in JobKind:
                child = self._children[lane] = self._spawn(lane)
                layers = self._ready(child, merge=False)
                self.layers.update({f"child_{name}": why for name, why in layers.items()})
            self._refuse_weak_layers(self.weakened)
        except ConfinementError:
            self.close()
            raise
        log_event(logger, "sandbox_started", mode=self._zygote.mode, layers=self.layers)
        return self.layers

    def render(self, job: Job, upload: UploadSource = None) -> bytes:
        """The image for `job`, rendered in a child; raises a RenderqError on failure.

        Given a function as `upload`, the sandbox calls it just before sending, so the
        upload's only reference is dropped as soon as the child has it.
        """
        _reply, image = self._ask(job.kind, _render_request(job), upload)
        return image

    def compare(self, first: bytes | None, second: bytes | None) -> PixelComparison:
        """Decode two results in a fresh image child and compare them (see
        `worker.comparison`); either may be missing. Raises a RenderqError as a render does
        (an image that does not decode is `invalid_image`), under the same limits."""
        first, second = first or b"", second or b""
        request = {"compare": {"first": len(first)}}
        reply, _ = self._ask(JobKind.IMAGE, request, first + second)
        try:
            return PixelComparison.from_wire(reply.get("comparison"))
        except MalformedComparison as exc:
            raise job_error(ErrorCode.RENDER_FAILED, f"the sandbox's comparison: {exc}") from exc

    def _ask(
        self, lane: JobKind, request: dict[str, Any], body: UploadSource
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request to the lane's child and return its successful reply; a failure
        is raised as the RenderqError the child (or its death, or the clock) gave."""
        child = self._take(lane)
        child.jobs += 1  # counted before a byte is sent: an image child never sees a second job
        try:
            reply, data = self._exchange(child, request, body)
        except TimeoutError as exc:
            self._retire(child)
            raise job_error(
                ErrorCode.RENDER_TIMEOUT,
                f"the render took longer than {self.settings.render_timeout} s",
            ) from exc
        except (EOFError, OSError) as exc:  # ProtocolError is an OSError too
            raise _death_error(self._retire(child)) from exc
        except BaseException:
            # Anything else (the upload could not be loaded, the worker is stopping): this
            # child goes too.
            self._retire(child, wait=False)
            raise
        if not reply.get("ok"):
            self._retire(child, wait=False)  # it answered: its exit says nothing more
            if reply.get("detail"):
                log_event(logger, "render_failed_detail", logging.ERROR, detail=reply["detail"])
            raise job_error(str(reply.get("code")), str(reply.get("message"))[:_MAX_MESSAGE])
        if lane is JobKind.IMAGE or child.jobs >= self.settings.sandbox_max_jobs:
            self._retire(child, wait=False)
        return reply, data

    def _exchange(
        self, child: _Child, request: dict[str, Any], body: UploadSource
    ) -> tuple[dict[str, Any], bytes]:
        """Send the request, and wait for the reply until the render's deadline."""
        deadline = time.monotonic() + self.settings.render_timeout
        child.sock.settimeout(self.settings.render_timeout)
        _send(child, request, body)
        return receive_message(child.sock, self.settings.max_result_bytes, deadline)

    def run_hook(
        self,
        code: str,
        lane: JobKind = JobKind.IMAGE,
        job: Job | None = None,
        upload: bytes | None = None,
        data: bytes = b"",
        keep: bool = False,
    ) -> dict[str, Any]:
        """Tests only: run `code` in a child of `lane`, after it rendered `job` if one is
        given, and retire the child unless `keep` (to see what it does to the next job).
        Returns the child's answer: `{"ok": True, "report": {...}}` or an error."""
        child = self._take(lane)
        try:
            if job is not None:
                child.jobs += 1
                _send(child, _render_request(job), upload)
                receive_message(child.sock, self.settings.max_result_bytes)
            send_message(child.sock, {"hook": code}, data)
            reply, _ = receive_message(child.sock, 0, time.monotonic() + _HOOK_TIMEOUT)
        except BaseException:
            self._retire(child)
            raise
        if not keep:
            self._retire(child)
        return reply

    def close(self) -> None:
        if self._zygote is not None:
            for child in list(self._children.values()):
                child.sock.close()
            self._children.clear()
            self._zygote.close()
            self._zygote = None

    # --- children ------------------------------------------------------------------------

    def _take(self, lane: str) -> _Child:
        """The lane's child, ready: the spare forked after the last image job, or a new one."""
        if self._zygote is None:
            self.start()
        if lane is JobKind.IMAGE and self._spawn_pending:
            self._children[lane] = self._receive_spawned(lane)
        child = self._children.get(lane)
        if child is not None and lane is JobKind.IMAGE and child.jobs:
            self._retire(child, wait=False)  # never reached: an image child is retired at once
            child = None
        if child is None:
            child = self._children[lane] = self._spawn(lane)
        if not child.ready:
            self._ready(child, merge=True)
        return child

    def _spawn(self, lane: str) -> _Child:
        self._command({"spawn": lane})
        return self._receive_spawned(lane)

    def _receive_spawned(self, lane: str) -> _Child:
        self._spawn_pending = False
        self.children_started += 1
        try:
            header, sock = receive_packet(self._control(), _deadline())
        except (EOFError, OSError) as exc:
            raise ConfinementError(f"the sandbox's zygote is gone: {exc!r}") from exc
        if sock is None or "child" not in header:
            raise ConfinementError(f"the zygote did not give a {lane} child: {header}")
        return _Child(int(header["child"]), lane, sock)

    def _ready(self, child: _Child, merge: bool) -> Report:
        """The child's first message: the layers it verified. Every layer must be as the
        first children reported at start, or the sandbox is not what it claims."""
        try:
            ready, _ = receive_message(child.sock, 0, _deadline())
        except (EOFError, OSError) as exc:
            status = self._retire(child)
            raise ConfinementError(f"a sandbox child did not start ({_describe(status)})") from exc
        layers: Report = ready.get("layers", {})
        child.ready = True
        if merge:
            self._check_like_the_first(layers)
        return layers

    def _check_like_the_first(self, layers: Report) -> None:
        """A later child must report every layer the first ones did, none weaker than then."""
        expected = {
            name.removeprefix("child_"): why
            for name, why in self.layers.items()
            if name.startswith("child_")
        }
        missing = sorted(set(expected) - set(layers))
        if missing:
            raise ConfinementError(f"a sandbox child did not report {', '.join(missing)}")
        self._refuse_weak_layers(
            {name: why for name, why in layers.items() if why != OK and expected[name] == OK}
        )

    def _retire(self, child: _Child, wait: bool = True) -> int:
        """Have the zygote kill `child`; with `wait`, its wait status once reaped (what a
        failure's cause is read from), else -1 at once. After an image child, ask for the
        next one now, so it is forked while the worker stores the result."""
        child.sock.close()
        if self._children.get(child.lane) is child:
            del self._children[child.lane]
        reply = self._command({"retire": child.id, "wait": wait})
        if child.lane is JobKind.IMAGE:
            self._command({"spawn": JobKind.IMAGE})
            self._spawn_pending = True
        return int(reply.get("status", -1))

    def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command; wait for its reply, except a spawn's (see `_receive_spawned`)
        and a retire's without wait (it has none). Replies come in order, so a spare still
        on its way is taken in first."""
        if self._spawn_pending:
            self._children[JobKind.IMAGE] = self._receive_spawned(JobKind.IMAGE)
        try:
            send_packet(self._control(), command)
            if "spawn" in command or command.get("wait") is False:
                return {}  # a spawn's reply carries the child: `_receive_spawned` reads it
            reply, _ = receive_packet(self._control(), _deadline())
        except (EOFError, OSError) as exc:
            raise ConfinementError(f"the sandbox's zygote is gone: {exc!r}") from exc
        return reply

    def _control(self) -> socket.socket:
        if self._zygote is None:
            raise ConfinementError("the sandbox is not started")
        return self._zygote.control

    def _refuse_weak_layers(self, weak: dict[str, str]) -> None:
        if not weak or self.settings.sandbox_allow_weak:
            return
        layer, why = next(iter(weak.items()))
        raise ConfinementError(
            f"sandbox layer {layer!r} is not in place: {why}; "
            "set RENDERQ_SANDBOX_ALLOW_WEAK=1 to run without it"
        )


def _render_request(job: Job) -> dict[str, Any]:
    """What the child needs of the job, not the whole record."""
    return {"render": {"id": job.id, "kind": job.kind, "request": job.request}}


def _send(child: _Child, request: dict[str, Any], source: UploadSource) -> None:
    """Send a request and its body (an upload, or the images to compare), loaded only now."""
    body = source() if callable(source) else source
    send_message(child.sock, request, body or b"")


def _deadline() -> float:
    return time.monotonic() + START_TIMEOUT


def _describe(status: int) -> str:
    if status < 0:
        return "unknown status"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _death_error(status: int) -> RenderqError:
    """Why a child died mid-job, from its wait status."""
    if status >= 0 and os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum == signal.SIGXCPU:
            return job_error(ErrorCode.RENDER_TIMEOUT, "the render used up its CPU time")
        if signum != signal.SIGKILL:
            name = signal.Signals(signum).name
            return job_error(ErrorCode.RENDER_CRASHED, f"the renderer crashed ({name})")
    return job_error(ErrorCode.RENDER_CRASHED, "the renderer exited mid-render")
