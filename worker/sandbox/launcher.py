"""Start the sandbox: bubblewrap runs the zygote as the render user, in its own namespaces.

The worker starts as root only to do this: the zygote runs as `RENDERQ_RENDER_USER`, a user
that owns no file and shares no uid with Redis, the front or the workers, in user, mount, PID,
network, IPC and UTS namespaces of its own. Its file system is a read-only view of what
rendering needs: `/usr` (the interpreter, its libraries, the fonts), renderq's installed
venv, and renderq's ImageMagick policy as the only `policy.xml`. `/tmp` is empty and each
render child mounts its own over it; Redis's data, the checkout, `/home`, `/root`, `/var`,
`/etc/renderq` and the other sandboxes are not in it at all.

Where bubblewrap cannot run (not installed, user namespaces disabled) the worker refuses to
start, unless `RENDERQ_SANDBOX_ALLOW_WEAK=1`: then the zygote runs without namespaces and
the missing layers are reported at every start and on `/healthz`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from renderq.logs import log_event
from renderq.settings import Settings
from worker.sandbox.confinement import ConfinementError, Report, namespace_ids
from worker.sandbox.policy import POLICY_DIR, policy_xml
from worker.sandbox.protocol import command_socket_pair, receive_packet, send_packet

logger = logging.getLogger("renderq.worker.sandbox")

START_TIMEOUT: Final = 60.0
EXIT_GRACE: Final = 5.0
_ZYGOTE_MODULE: Final = "worker.sandbox.zygote"
_ZYGOTE_TMP_BYTES: Final = 16 * 1024 * 1024
# Top-level entries that are symlinks into /usr on a merged-/usr system, or directories.
_SYSTEM_LINKS: Final = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_SANDBOX_ENV: Final = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass
class Zygote:
    """The running zygote: its process (bubblewrap, or the zygote itself), the control
    socket, and the layers it verified."""

    process: subprocess.Popen[bytes]
    control: socket.socket
    layers: Report
    mode: str
    temp_dirs: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Closing the control socket makes the zygote kill its children and exit.

        A zygote that does not (stopped, say) is killed if this process still may; if not
        (the worker has dropped root), it is left to die with the worker, which bubblewrap
        sees to: the worker never waits on it for ever.
        """
        self.control.close()
        try:
            self.process.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                self.process.kill()
            try:
                self.process.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                log_event(logger, "sandbox_abandoned", logging.WARNING, pid=self.process.pid)
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)


def launch_zygote(settings: Settings, worker_uid: int) -> Zygote:
    """Start the sandbox and wait until its zygote has confined itself and proved it.

    `worker_uid` is the uid the worker will run as, which the sandbox must not share.
    Raises ConfinementError when no sandbox could be started at all; a sandbox with missing
    layers starts, and `Zygote.layers` says which.
    """
    if not Path(settings.installed_python).exists():
        raise ConfinementError(
            f"renderq is not installed in {settings.install_dir} (RENDERQ_INSTALL_DIR): "
            "`make run` and `make test` install it"
        )
    user = _render_user(settings, worker_uid)
    bubblewrap_failure = _bubblewrap_failure(settings)
    if bubblewrap_failure is None:
        try:
            return _start(settings, worker_uid, user, "bubblewrap")
        except ConfinementError as exc:
            bubblewrap_failure = str(exc)
    if not settings.sandbox_allow_weak:
        raise ConfinementError(
            f"sandbox layer 'namespaces' cannot be set up: {bubblewrap_failure}; "
            "set RENDERQ_SANDBOX_ALLOW_WEAK=1 to run without it"
        )
    log_event(logger, "sandbox_without_namespaces", logging.WARNING, why=bubblewrap_failure)
    return _start(settings, worker_uid, user, "direct")


def _render_user(settings: Settings, worker_uid: int) -> pwd.struct_passwd | None:
    """The render user's entry when this process can switch to it; None when it cannot
    (not root), and the zygote then reports its identity as weak."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(settings.render_user)
    except KeyError as exc:
        raise ConfinementError(
            f"the render user {settings.render_user!r} (RENDERQ_RENDER_USER) does not exist: "
            "`make run` and `make test` create it"
        ) from exc
    if entry.pw_uid in (0, worker_uid):
        raise ConfinementError(
            f"the render user {settings.render_user!r} must be neither root nor the worker's user"
        )
    return entry


def _bubblewrap_failure(settings: Settings) -> str | None:
    if not os.access(settings.bwrap_path, os.X_OK):
        return f"bubblewrap is not installed at {settings.bwrap_path} (RENDERQ_BWRAP)"
    return None


def _start(
    settings: Settings, worker_uid: int, user: pwd.struct_passwd | None, mode: str
) -> Zygote:
    ours, theirs = command_socket_pair()
    with _policy_source(settings, mode) as (policy_fd, temp_dirs):
        zygote = [settings.installed_python, "-I", "-m", _ZYGOTE_MODULE, str(theirs.fileno())]
        argv = _bubblewrap_argv(settings, policy_fd) + zygote if mode == "bubblewrap" else zygote
        env = dict(_SANDBOX_ENV)
        if mode == "direct":
            env["MAGICK_CONFIGURE_PATH"] = temp_dirs[0]
        process = subprocess.Popen(
            argv,
            pass_fds=[fd for fd in (theirs.fileno(), policy_fd) if fd >= 0],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    theirs.close()
    zygote_process = Zygote(process, ours, {}, mode, temp_dirs)
    try:
        zygote_process.layers = _handshake(ours, settings, worker_uid, user, mode)
    except ConfinementError:
        zygote_process.close()
        raise
    return zygote_process


def _handshake(
    control: socket.socket,
    settings: Settings,
    worker_uid: int,
    user: pwd.struct_passwd | None,
    mode: str,
) -> Report:
    """Send the zygote its configuration; its answer is the layers it verified."""
    config: dict[str, Any] = {
        "settings": settings_for_sandbox(settings),
        "render_uid": user.pw_uid if user else os.getuid(),
        "worker_uid": worker_uid,
        "host_namespaces": namespace_ids(),
        "mode": mode,
    }
    try:
        send_packet(control, config)
        ready, _ = receive_packet(control, time.monotonic() + START_TIMEOUT)
    except (EOFError, OSError) as exc:
        raise ConfinementError(f"the sandbox ({mode}) did not start: {exc!r}") from exc
    if not ready.get("ok"):
        raise ConfinementError(str(ready.get("message")))
    layers: Report = ready["layers"]
    return layers


def settings_for_sandbox(settings: Settings) -> dict[str, Any]:
    """Every setting but the Redis URL, which may hold a password the sandbox must not see."""
    values = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    values.pop("redis_url")
    values.pop("redis_password_file")
    return values


@contextlib.contextmanager
def _policy_source(settings: Settings, mode: str) -> Iterator[tuple[int, list[str]]]:
    """The generated policy: a pipe bubblewrap reads into the sandbox's only policy.xml, or,
    without bubblewrap, a directory of its own (returned to be removed with the zygote)."""
    xml = policy_xml(settings).encode()
    if mode == "direct":
        directory = tempfile.mkdtemp(prefix="renderq-policy-")
        (Path(directory) / "policy.xml").write_bytes(xml)
        os.chmod(directory, 0o755)
        os.chmod(Path(directory) / "policy.xml", 0o644)
        yield -1, [directory]
        return
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, xml)  # far below a pipe's buffer: never blocks
        os.close(write_end)
        yield read_end, []
    finally:
        os.close(read_end)


def _bubblewrap_argv(settings: Settings, policy_fd: int) -> list[str]:
    argv = [settings.bwrap_path]
    argv += ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
    argv += ["--unshare-uts", "--unshare-cgroup-try", "--hostname", "renderq-sandbox"]
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        path = Path("/", name)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    # The dynamic loader's cache (ctypes finds libMagickWand through it) and fontconfig's
    # configuration; nothing else from /etc.
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    argv += ["--ro-bind-try", "/etc/fonts", "/etc/fonts"]
    argv += ["--ro-bind", settings.install_dir, settings.install_dir]
    if not Path(settings.font_dir).resolve().is_relative_to("/usr"):
        argv += ["--ro-bind-try", settings.font_dir, settings.font_dir]
    argv += ["--ro-bind-data", str(policy_fd), f"{POLICY_DIR}/policy.xml"]
    # The zygote's own /tmp (ctypes may need one to find libMagickWand); each child mounts
    # a fresh one over it, in a mount namespace of its own.
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(_ZYGOTE_TMP_BYTES),
        "--tmpfs",
        "/tmp",
    ]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--setenv", "MAGICK_CONFIGURE_PATH", POLICY_DIR, "--chdir", "/", "--"]
    return argv
