"""`python -m worker.sandbox.zygote FD`: the sandbox's first process and every child's parent.

The zygote confines itself, loads Pillow, Wand, the fonts and every coder renderq uses,
proves ImageMagick's policy, and then never touches job data: on the worker's request it
forks a render child and hands the worker that child's end of a socket pair, over which the
worker and the child talk directly. A child thus starts from a process that never saw any
client's bytes, already warm, in about a millisecond of fork (`gc.freeze` keeps the
interpreter from touching, and so copying, the inherited objects).

Commands, one JSON packet each on the control socket:
  {"spawn": "image" | "text"}   ->  {"child": N} with the child's socket attached
  {"retire": N}                 ->  {"status": wait status}: the child is killed and reaped
  {"retire": N, "wait": false}  ->  no answer: the child is killed, and reaped in passing
End of file on the control socket (the worker stopped or died): kill every child, exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Final

from PIL import Image as PillowImage
from wand.exceptions import PolicyError
from wand.image import Image as WandImage

from renderq.logs import configure_logging, log_event
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from worker import render
from worker.sandbox import confinement
from worker.sandbox.child import ChildConfig, run_child, use_private_tmp
from worker.sandbox.confinement import ConfinementError, Report
from worker.sandbox.policy import REFUSED_CODERS
from worker.sandbox.protocol import receive_packet, send_packet
from worker.sandbox.seccomp import child_rules, compile_filter, load_filter, zygote_rules

logger = logging.getLogger("renderq.worker.sandbox.zygote")

# Every input format but AVIF: its decoders (libheif with dav1d, libaom, x265 and libde265 in
# ImageMagick, libavif in Pillow) would add some 25 MB of address space to every child, which
# RLIMIT_AS counts, whether it reads an AVIF or not. A child loads them on its first AVIF.
_WARM_UP_FORMATS: Final = ("png", "jpeg", "gif", "webp", "bmp", "tiff")


@dataclass
class Zygote:
    control: socket.socket
    settings: Settings
    mode: str
    seccomp_program: bytes
    children: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    dying: list[int] = field(default_factory=list)  # killed, not reaped yet
    next_id: int = 1

    def serve(self) -> None:
        """Answer the worker's commands until it closes the control socket."""
        while True:
            try:
                command, _ = receive_packet(self.control)
            except (EOFError, ConnectionError):
                return
            self._reap_dying()
            if "spawn" in command and command["spawn"] in set(JobKind):
                self._spawn(JobKind(command["spawn"]))
            elif "retire" in command and command.get("wait", True):
                send_packet(self.control, {"status": self._retire(int(command["retire"]))})
            elif "retire" in command:
                self._kill(int(command["retire"]))
            else:
                send_packet(self.control, {"error": "unknown command"})

    def stop(self) -> None:
        for child_id in list(self.children):
            self._retire(child_id)
        for pid in self.dying:
            os.waitpid(pid, 0)

    def _spawn(self, lane: JobKind) -> None:
        ours, theirs = socket.socketpair()
        scratch = self._scratch_dir()
        child_id, self.next_id = self.next_id, self.next_id + 1
        config = ChildConfig(
            self.settings,
            lane,
            os.getpid(),
            _mount_namespace(),
            confinement.seccomp_filters(),
            scratch,
            self.seccomp_program,
        )
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            send_packet(self.control, {"error": f"cannot fork a child: {exc}"})
            return
        if pid == 0:  # pragma: no cover - the child never returns
            self.control.close()
            ours.close()
            run_child(theirs, config)
        theirs.close()
        self.children[child_id] = (pid, scratch)
        send_packet(self.control, {"child": child_id}, ours.fileno())
        ours.close()

    def _retire(self, child_id: int) -> int:
        """Kill and reap one child; its wait status (-1 for an unknown child)."""
        pid = self._kill(child_id, reap_later=False)
        return -1 if pid is None else os.waitpid(pid, 0)[1]

    def _kill(self, child_id: int, reap_later: bool = True) -> int | None:
        """SIGKILL one child, and forget it (its pid, or None for an unknown child).

        Reaping waits for the kernel to tear the process down; a child retired after a
        job that went well is reaped later, so the worker does not wait for that.
        """
        entry = self.children.pop(child_id, None)
        if entry is None:
            return None
        pid, scratch = entry
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if reap_later:
            self.dying.append(pid)
        return pid

    def _reap_dying(self) -> None:
        self.dying = [pid for pid in self.dying if os.waitpid(pid, os.WNOHANG)[0] == 0]

    def _scratch_dir(self) -> str | None:
        """Without bubblewrap a child may not be able to mount its own /tmp: it gets a
        directory of its own, removed when it is retired."""
        if self.mode != "direct":
            return None
        return tempfile.mkdtemp(prefix="renderq-child-")


def _mount_namespace() -> str:
    return os.readlink("/proc/self/ns/mnt")


def start(config: dict[str, Any]) -> tuple[Settings, Report, bytes]:
    """Everything before the first child: confine, load, prove, warm up, verify.

    Returns the settings, the layers verified, and the children's seccomp filter, compiled
    here once (before the file-size limit, since libseccomp writes it out to a memfd).
    """
    confinement.die_with_parent()
    settings = Settings(**config["settings"])
    configure_logging(settings.log_level)
    use_private_tmp()
    child_filter = compile_filter(child_rules())
    confinement.limit_zygote(settings)
    confinement.forbid_new_privileges()
    confinement.set_dumpable(False)
    # Imported above, before this filter: Wand finds libMagickWand by running ldconfig.
    load_filter(zygote_rules())
    let_through = prove_policy()
    if let_through:
        raise ConfinementError(
            "ImageMagick did not refuse "
            + ", ".join(let_through)
            + ": the policy in force is not renderq's (a host policy or build lets them in)"
        )
    for failure in render.warm_up(settings, _warm_up_images()):
        log_event(logger, "warm_up_failed", logging.WARNING, error=failure)
    report = confinement.verify_zygote(
        int(config["render_uid"]), int(config["worker_uid"]), config["host_namespaces"]
    )
    report["imagemagick_policy"] = confinement.OK
    return settings, report, child_filter


def prove_policy() -> list[str]:
    """Try every refused coder family; the names ImageMagick did not refuse by policy."""
    attempts: list[tuple[str, dict[str, Any]]] = [
        (fmt, {"blob": blob, "format": fmt}) for fmt, blob in REFUSED_CODERS.items()
    ]
    attempts.append(("@file", {"filename": "@/etc/ld.so.cache"}))
    let_through = []
    for name, arguments in attempts:
        try:
            with WandImage(**arguments):
                pass
        except PolicyError:
            continue
        except Exception:  # refused for another reason: not proof of policy
            let_through.append(name)
            continue
        let_through.append(name)
    return let_through


def _warm_up_images() -> dict[str, bytes]:
    """A tiny image in every input format, for the zygote to load each decoder once."""
    images = {}
    for fmt in _WARM_UP_FORMATS:
        out = io.BytesIO()
        PillowImage.new("RGB", (8, 8), (200, 100, 50)).save(out, fmt.upper())
        images[fmt] = out.getvalue()
    return images


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[1]))
    try:
        config, _ = receive_packet(control)
        settings, report, child_filter = start(config)
    except Exception as exc:  # the worker gets the reason and refuses to start
        send_packet(control, {"ok": False, "message": f"the sandbox cannot start: {exc}"})
        return 1
    zygote = Zygote(control, settings, str(config["mode"]), child_filter)
    log_event(logger, "zygote_ready", mode=zygote.mode, pid=os.getpid())
    # Children start from this memory: return what the warm-up freed, and keep the garbage
    # collector off the inherited objects, so a fork copies and touches as little as it can.
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    gc.freeze()
    send_packet(control, {"ok": True, "layers": report})
    try:
        zygote.serve()
    except ConnectionError:
        pass  # the worker went away mid-command: its children go too
    finally:
        zygote.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
