"""What a process in the sandbox does to itself, and how it proves what it did.

bubblewrap builds the sandbox (see `launcher`): user, mount, PID, network, IPC and UTS
namespaces, a read-only view of the few paths rendering needs, no capabilities, and
no_new_privs. The zygote then adds what bubblewrap does not: resource limits, a parent-death
signal, non-dumpability and a seccomp filter. Each render child adds its own layer on top:
a nested user namespace in which it mounts a private, empty `/tmp`, after which it drops every
capability, the bounding set included, and loads a stricter filter.

Every layer is checked by the process itself from what the kernel reports (`/proc/self`,
`prctl`, `getrlimit`, a refused `socket()`), never taken on trust; `verify_*` return one line
per layer, "ok" or why not.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from renderq.settings import Settings

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
PR_SET_PDEATHSIG: Final = 1
PR_GET_PDEATHSIG: Final = 2
PR_GET_DUMPABLE: Final = 3
PR_SET_DUMPABLE: Final = 4
PR_CAPBSET_DROP: Final = 24
PR_SET_NO_NEW_PRIVS: Final = 38
_MS_NOSUID: Final = 0x2
_MS_NODEV: Final = 0x4
_MS_NOEXEC: Final = 0x8
_CAP_VERSION_3: Final = 0x20080522
_MIB: Final = 1024 * 1024
# Processes of the sandbox's user in its namespace: bubblewrap's init, the zygote, the text
# child, an image child and its spare, with room for a few killed and not reaped yet.
ZYGOTE_PROCESSES: Final = 12

OK: Final = "ok"
# Namespaces bubblewrap unshares; the child compares its own against the worker's.
NAMESPACES: Final = ("user", "mnt", "pid", "net", "ipc", "uts")
# Paths that hold other clients' data or secrets: none may be visible in the sandbox.
HIDDEN_PATHS: Final = ("/var", "/home", "/root", "/etc/renderq", "/run", "/srv", "/mnt")
_CAPABILITY_FIELDS: Final = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

Report = dict[str, str]


class ConfinementError(RuntimeError):
    """A layer of the sandbox could not be set up; nothing may be rendered."""


_libc = ctypes.CDLL(None, use_errno=True)
_LAST_CAPABILITY: Final = int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def _call(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


# --- applying layers -------------------------------------------------------------------


def die_with_parent() -> None:
    """SIGKILL when the parent dies; set again after every identity change, which clears it."""
    _call(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")


def set_dumpable(dumpable: bool) -> None:
    """A non-dumpable process cannot be read through /proc or ptrace by its siblings."""
    _call(_libc.prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0), "PR_SET_DUMPABLE")


def forbid_new_privileges() -> None:
    _call(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


def limit_zygote(settings: Settings) -> None:
    """The zygote's own limits, which are also the ceilings its children inherit."""
    _set_limits(
        {
            resource.RLIMIT_AS: (settings.render_memory_mb * _MIB,) * 2,
            resource.RLIMIT_FSIZE: (0, settings.render_file_mb * _MIB),
            resource.RLIMIT_NOFILE: (settings.render_max_files,) * 2,
            resource.RLIMIT_CORE: (0, 0),
            resource.RLIMIT_NPROC: (ZYGOTE_PROCESSES,) * 2,
        }
    )


def limit_child(settings: Settings, cpu_seconds: int) -> None:
    """A render child's limits: no new process at all, and hard caps on CPU and memory."""
    _set_limits(
        {
            resource.RLIMIT_AS: (settings.render_memory_mb * _MIB,) * 2,
            resource.RLIMIT_FSIZE: (settings.render_file_mb * _MIB,) * 2,
            resource.RLIMIT_NOFILE: (settings.render_max_files,) * 2,
            resource.RLIMIT_CORE: (0, 0),
            resource.RLIMIT_NPROC: (0, 0),
            resource.RLIMIT_CPU: (settings.render_timeout + 1, cpu_seconds),
        }
    )


def _set_limits(limits: Mapping[int, tuple[int, int]]) -> None:
    for kind, (soft, hard) in limits.items():
        resource.setrlimit(kind, (soft, hard))


def allow_cpu_seconds(seconds: int) -> None:
    """Move the soft CPU limit `seconds` past what this process used so far (SIGXCPU there).

    RLIMIT_CPU counts a whole life, and the text child renders many jobs; its hard limit
    still bounds them all.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (min(used + seconds + 1, hard), hard))


def enter_private_tmp(size_mb: int) -> None:
    """A user and mount namespace of this process's own, with an empty tmpfs on /tmp.

    A user namespace needs no privilege, so the zygote keeps none; the capabilities this one
    grants exist only to mount the tmpfs and are dropped right after (`drop_capabilities`).
    The process must be dumpable to write its own id maps.
    """
    uid, gid = os.getuid(), os.getgid()
    set_dumpable(True)
    _call(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC), "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    options = f"size={size_mb}m,mode=0700".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _call(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", flags, options), "mount /tmp")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    """Empty the bounding set, then every other set: nothing can be regained, even by exec."""
    for capability in range(_LAST_CAPABILITY + 1):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and _has_bounding(capability):
            raise OSError(ctypes.get_errno(), f"cannot drop capability {capability}")
    header = _CapHeader(_CAP_VERSION_3, 0)
    empty = (_CapData * 2)()
    _call(_libc.capset(ctypes.byref(header), empty), "capset")


def _has_bounding(capability: int) -> bool:
    return bool(int(_status()["CapBnd"], 16) >> capability & 1)


# --- verifying layers ------------------------------------------------------------------


def verify_zygote(render_uid: int, worker_uid: int, host_namespaces: Mapping[str, str]) -> Report:
    """What the zygote checks of itself, once, before it makes any child."""
    status = _status()
    return _verify(
        {
            "identity": lambda: _check_identity(render_uid, worker_uid),
            "namespaces": lambda: _check_namespaces(host_namespaces),
            "network": _check_network,
            "mounts": _check_mounts,
            "capabilities": lambda: _check_capabilities(status),
            "no_new_privs": lambda: _check_no_new_privs(status),
            "parent_death_signal": _check_parent_death_signal,
            "not_dumpable": _check_not_dumpable,
            "seccomp": lambda: _check_seccomp(status),
        }
    )


def verify_child(settings: Settings, zygote_mounts: str, zygote_filters: int) -> Report:
    """What every render child checks of itself after its own layers, before any job.

    Each check tests what only the child's own layer gives, not what it inherited from the
    zygote: one more seccomp filter than the zygote has, and calls that filter alone denies.
    """
    status = _status()
    return _verify(
        {
            "private_tmp": lambda: _check_private_tmp(zygote_mounts),
            "capabilities": lambda: _check_capabilities(status),
            "no_new_privs": lambda: _check_no_new_privs(status),
            "parent_death_signal": _check_parent_death_signal,
            "not_dumpable": _check_not_dumpable,
            "seccomp": lambda: _check_own_filter(status, zygote_filters),
            "no_sockets": _check_no_sockets,
            "no_signals": _check_no_signals,
            "no_processes": _check_no_processes,
            "limits": lambda: _check_limits(settings),
        }
    )


def seccomp_filters() -> int:
    """How many seccomp filters this process runs under."""
    return int(_status().get("Seccomp_filters", "0"))


def namespace_ids() -> dict[str, str]:
    """This process's namespaces, e.g. `{"net": "net:[4026531840]"}`, to compare against."""
    return {name: os.readlink(f"/proc/self/ns/{name}") for name in NAMESPACES}


def _verify(checks: Mapping[str, Callable[[], str | None]]) -> Report:
    report: Report = {}
    for layer, check in checks.items():
        try:
            problem = check()
        except OSError as exc:
            problem = f"cannot be checked: {exc}"
        report[layer] = OK if problem is None else problem
    return report


def _status() -> dict[str, str]:
    """/proc/self/status as a mapping: what the kernel says of this process's privileges."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _check_identity(render_uid: int, worker_uid: int) -> str | None:
    uids, gids = set(os.getresuid()), set(os.getresgid())
    if uids == {worker_uid}:
        return f"runs as the worker's own uid {worker_uid}"
    if uids != {render_uid} or render_uid == 0:
        return f"runs as uid {sorted(uids)}, expected {render_uid}"
    if 0 in gids or os.getgroups():
        return "keeps group 0 or supplementary groups"
    return None


def _check_namespaces(host: Mapping[str, str]) -> str | None:
    own = namespace_ids()
    shared = [name for name in NAMESPACES if own[name] == host.get(name)]
    return f"shares the worker's {', '.join(shared)} namespace" if shared else None


def _check_network() -> str | None:
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
    return None if interfaces == ["lo"] else f"sees network interfaces {interfaces}"


def _check_mounts() -> str | None:
    visible = [path for path in HIDDEN_PATHS if os.path.lexists(path)]
    if visible:
        return f"sees {', '.join(visible)}"
    if not os.statvfs("/").f_flag & os.ST_RDONLY:
        return "/ is writable"
    return None


def _check_private_tmp(zygote_mounts: str) -> str | None:
    if os.readlink("/proc/self/ns/mnt") == zygote_mounts:
        return "shares the zygote's mounts"
    if os.listdir("/tmp"):
        return "/tmp is not empty"
    return None


def _check_capabilities(status: Mapping[str, str]) -> str | None:
    held = [name for name in _CAPABILITY_FIELDS if int(status.get(name, "1"), 16)]
    return f"holds capabilities ({', '.join(held)})" if held else None


def _check_no_new_privs(status: Mapping[str, str]) -> str | None:
    return None if status.get("NoNewPrivs") == "1" else "no_new_privs is not set"


def _check_parent_death_signal() -> str | None:
    value = ctypes.c_int(0)
    _call(_libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0), "PR_GET_PDEATHSIG")
    return None if value.value == signal.SIGKILL else "no parent-death signal"


def _check_not_dumpable() -> str | None:
    return None if _libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 else "dumpable"


def _check_seccomp(status: Mapping[str, str]) -> str | None:
    return None if status.get("Seccomp") == "2" else "no seccomp filter"


def _check_own_filter(status: Mapping[str, str], zygote_filters: int) -> str | None:
    if status.get("Seccomp") != "2":
        return "no seccomp filter"
    if int(status.get("Seccomp_filters", "0")) != zygote_filters + 1:
        return "the child's own filter is not loaded"
    return None


def _check_no_sockets() -> str | None:
    """socket() is denied to the zygote already; socketpair() only to a child."""
    try:
        first, second = socket.socketpair()
    except PermissionError:
        return None
    first.close()
    second.close()
    return "can make a socket pair"


def _check_no_signals() -> str | None:
    try:
        os.kill(os.getppid(), 0)
    except PermissionError:
        return None
    return "can signal the zygote"


def _check_no_processes() -> str | None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    return None if (soft, hard) == (0, 0) else f"RLIMIT_NPROC is {soft}/{hard}"


def _check_limits(settings: Settings) -> str | None:
    expected = {
        "RLIMIT_AS": settings.render_memory_mb * _MIB,
        "RLIMIT_CPU": None,  # finite: its value depends on the child's lane
        "RLIMIT_FSIZE": settings.render_file_mb * _MIB,
        "RLIMIT_NOFILE": settings.render_max_files,
        "RLIMIT_CORE": 0,
    }
    for name, value in expected.items():
        _soft, hard = resource.getrlimit(getattr(resource, name))
        if hard == resource.RLIM_INFINITY or (value is not None and hard != value):
            return f"{name} hard limit is {hard}"
    return None
