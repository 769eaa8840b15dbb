"""What a sandbox child does to itself before it touches a job.

In order: leave the worker's network (a new network namespace), give up root, cap its
resources, point ImageMagick at renderq's policy and prove that policy is in force, and make
Pillow treat decompression bombs as errors. Each step is a plain function so the order reads
top to bottom in `confine`.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image as PILImage
from wand.exceptions import PolicyError
from wand.image import Image as WandImage

from renderq.settings import Settings

CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWNET: Final = 0x40000000
PR_SET_PDEATHSIG: Final = 1
PR_SET_DUMPABLE: Final = 4

BUNDLED_POLICY_DIR: Final = Path(__file__).resolve().parent.parent / "deploy" / "imagemagick"

# An MVG drawing: renderq's policy must refuse to read it. If it reads, the policy is not the
# one in force, and the child refuses to render.
_POLICY_PROBE: Final = b"push graphic-context\nviewbox 0 0 1 1\npop graphic-context\n"


class ConfinementError(RuntimeError):
    """The child could not be confined as required; it must not render."""


@dataclass(frozen=True)
class Confinement:
    """How the child ended up confined, for the worker to log at start."""

    network: str  # "isolated", or why the network is still shared
    user: str


def policy_dir(settings: Settings) -> str:
    return settings.imagemagick_policy_dir or str(BUNDLED_POLICY_DIR)


def confine(settings: Settings) -> Confinement:
    """Confine the calling process; raise ConfinementError if it cannot be made safe."""
    _die_with_parent()
    for stop in (signal.SIGTERM, signal.SIGINT):
        # The worker decides when a render stops; a stop aimed at its process group must not
        # cut the render in hand short.
        signal.signal(stop, signal.SIG_IGN)
    # A write past RLIMIT_FSIZE then fails with EFBIG instead of killing the child.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    network = _isolate_network()
    user = _drop_root(settings.worker_user)
    _limit_resources(settings)
    os.environ["MAGICK_CONFIGURE_PATH"] = policy_dir(settings)
    prove_policy()
    _refuse_bombs(settings)
    return Confinement(network, user)


def prove_policy() -> None:
    """Raise ConfinementError unless ImageMagick refuses to read an MVG blob."""
    try:
        with WandImage(blob=_POLICY_PROBE, format="mvg"):
            pass
    except PolicyError:
        return
    raise ConfinementError("ImageMagick read an MVG blob: renderq's policy.xml is not in force")


def _die_with_parent() -> None:
    """If the worker dies, even by SIGKILL, the kernel kills this child too."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _isolate_network() -> str:
    """A new network namespace with no interfaces up: no request can leave the child.

    Root creates it directly (before giving up root); anyone else through a user namespace
    that maps only its own ids. Where neither is allowed, say why: the caller logs it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        return f"shared (unshare failed: {os.strerror(ctypes.get_errno())})"
    if uid != 0:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    return "isolated"


def _drop_root(user: str) -> str:
    """Run as `user` when started as root; never render as root."""
    if os.geteuid() == 0:
        drop_privileges(user)
    if os.geteuid() == 0 or os.getegid() == 0:
        raise ConfinementError("refusing to render as root")
    return pwd.getpwuid(os.geteuid()).pw_name


def drop_privileges(user: str) -> None:
    """Become `user` for good: groups, then gid, then uid (after which none can be regained)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise ConfinementError(f"started as root, but the user {user!r} does not exist") from exc
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    # Changing uid made the process non-dumpable, which leaves /proc/self owned by root: a
    # sandbox child could not then map its ids into the user namespace that cuts its network.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1)


def _limit_resources(settings: Settings) -> None:
    mib = 1024 * 1024
    limits = {
        resource.RLIMIT_AS: settings.render_memory_mb * mib,
        resource.RLIMIT_FSIZE: settings.render_file_mb * mib,
        resource.RLIMIT_NOFILE: settings.render_max_files,
        resource.RLIMIT_CORE: 0,
    }
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))


def limit_cpu_seconds(seconds: int) -> None:
    """Allow this child `seconds` more CPU time (SIGXCPU past it).

    RLIMIT_CPU counts a process's whole life, and a child renders many jobs: the soft limit
    is moved forward before each one.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (used + seconds + 1, hard))


def _refuse_bombs(settings: Settings) -> None:
    # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that; renderq raises at once.
    PILImage.MAX_IMAGE_PIXELS = settings.max_input_pixels
    warnings.simplefilter("error", PILImage.DecompressionBombWarning)
