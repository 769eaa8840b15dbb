"""Seccomp filters, built with libseccomp (Debian's libseccomp2) through ctypes.

Two filters stack: the zygote's, loaded once when the sandbox starts, and each render child's,
loaded after the child has set up its private mounts and dropped its capabilities. Both allow
by default and deny a list of system calls with EPERM (so a compromised decoder gets an error
it can report, not a new door), and kill a process that makes a call in another ABI (32-bit
or x32), where the list would not apply.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

_ALLOW: Final = 0x7FFF0000
_KILL_PROCESS: Final = 0x80000000
_ERRNO: Final = 0x00050000
_ATTR_ACT_BADARCH: Final = 2
_ATTR_CTL_OPTIMIZE: Final = 8
_OPTIMIZE_BINARY_TREE: Final = 2  # every system call pays a few comparisons, not one per rule
_PR_SET_SECCOMP: Final = 22
_SECCOMP_MODE_FILTER: Final = 2
_BPF_INSTRUCTION: Final = 8  # bytes in a struct sock_filter
_CMP_NE: Final = 1
_CMP_MASKED_EQ: Final = 7
_INT_MASK: Final = 0xFFFFFFFF

CLONE_THREAD: Final = 0x00010000
# Every CLONE_NEW* flag: no process in the sandbox makes a namespace by clone.
_CLONE_NAMESPACES: Final = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)

# Denied to every process in the sandbox, the zygote included: running programs, reading or
# writing another process, the kernel's larger attack surfaces (eBPF, perf, keyrings,
# userfaultfd, io_uring, module and kexec loading), and new sockets (the zygote makes its
# socket pairs with socketpair, which it keeps).
SANDBOX_DENIED: Final = (
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "socket",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "fanotify_init",
    "setns",
    "pivot_root",
    "chroot",
    "syslog",
    "vhangup",
    "uselib",
    "personality",
    "mbind",
    "migrate_pages",
    "move_pages",
    "set_mempolicy",
)

# Denied to a render child on top: new namespaces and mounts (it has made its own), new
# processes, a new session, its last socket calls, System V IPC, and every signal (its
# siblings and the zygote run as the same user; an abort() that cannot signal still ends in
# a crash, which is all it is for).
CHILD_DENIED: Final = (
    "unshare",
    "mount",
    "umount2",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "fork",
    "vfork",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "setsid",
    "setpgid",
    "pidfd_open",
    "pidfd_send_signal",
    "shmget",
    "shmat",
    "msgget",
    "semget",
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "setpriority",
    "ioprio_set",
    "mq_open",
    "mq_notify",
)

# fcntl commands that make a file send signals to a process of the caller's choosing:
# F_SETOWN, F_SETSIG, F_SETOWN_EX; and the ioctls that do the same: FIOSETOWN, SIOCSPGRP.
_FCNTL_OWNERS: Final = (8, 10, 15)
_IOCTL_OWNERS: Final = (0x8901, 0x8902)
# Calls that take a pid, where 0 means the caller: a child may use them on itself only.
_OWN_PID_ONLY: Final = (
    "prlimit64",
    "sched_setaffinity",
    "sched_setparam",
    "sched_setscheduler",
    "sched_setattr",
    "get_robust_list",
)


class SeccompError(OSError):
    """libseccomp is missing, or refused to build or load a filter."""


class _ArgCompare(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


@dataclass(frozen=True)
class Arg:
    """A condition on argument `index`: `(argument & mask) == equals`, or with `differs`,
    `argument != equals` over all 64 bits.

    An `int` argument is compared under a 32-bit mask: the kernel reads its low half only, so
    a caller could otherwise dodge an equality test by setting the high one.
    """

    index: int
    equals: int
    mask: int = _INT_MASK
    differs: bool = False

    def compare(self) -> _ArgCompare:
        if self.differs:
            return _ArgCompare(self.index, _CMP_NE, self.equals, 0)
        return _ArgCompare(self.index, _CMP_MASKED_EQ, self.mask, self.equals)


@dataclass(frozen=True)
class Rule:
    """Deny `syscall` with `errno_value` when every condition holds (always, with none)."""

    syscall: str
    errno_value: int = errno.EPERM
    conditions: tuple[Arg, ...] = ()


def load_filter(rules: Iterable[Rule]) -> None:
    """Build a filter that allows everything but `rules` and load it into this process.

    Loading also sets no_new_privs, which libseccomp does by default.
    """
    with _filter(rules) as (library, context):
        _check(library.seccomp_load(context), "seccomp_load")


def compile_filter(rules: Iterable[Rule]) -> bytes:
    """The BPF program of a filter, built once by the zygote for every child to load fast."""
    with _filter(rules) as (library, context):
        descriptor = os.memfd_create("renderq-seccomp")
        try:
            _check(library.seccomp_export_bpf(context, descriptor), "seccomp_export_bpf")
            os.lseek(descriptor, 0, os.SEEK_SET)
            return os.read(descriptor, os.fstat(descriptor).st_size)
        finally:
            os.close(descriptor)


def load_program(program: bytes) -> None:
    """Load a program from `compile_filter` into this process; no_new_privs must be set."""
    instructions = (ctypes.c_char * len(program)).from_buffer_copy(program)
    fprog = _SockFprog(len(program) // _BPF_INSTRUCTION, ctypes.addressof(instructions))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise SeccompError(f"cannot load the filter: {os.strerror(ctypes.get_errno())}")


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


@contextlib.contextmanager
def _filter(rules: Iterable[Rule]) -> Iterator[tuple[ctypes.CDLL, int]]:
    library = _library()
    context = library.seccomp_init(_ALLOW)
    if not context:
        raise SeccompError("seccomp_init failed")
    try:
        _check(library.seccomp_attr_set(context, _ATTR_ACT_BADARCH, _KILL_PROCESS), "attr")
        _check(library.seccomp_attr_set(context, _ATTR_CTL_OPTIMIZE, _OPTIMIZE_BINARY_TREE), "attr")
        for rule in rules:
            _add(library, context, rule)
        yield library, context
    finally:
        library.seccomp_release(context)


def zygote_rules() -> list[Rule]:
    """The sandbox-wide filter: the denied list, and no clone that makes a namespace."""
    rules = [Rule(name) for name in SANDBOX_DENIED]
    rules += [Rule("clone", conditions=(Arg(0, flag, mask=flag),)) for flag in _CLONE_NAMESPACES]
    # glibc falls back to clone, whose flags a filter can read (clone3 passes a pointer).
    rules.append(Rule("clone3", errno.ENOSYS))
    return rules


def child_rules() -> list[Rule]:
    """A render child's filter, on top of the zygote's.

    No process but threads. No way to act on another process of the sandbox (the zygote and
    the other children share its user and PID namespace): no signal, whether sent or arranged
    through a file's owner (F_SETOWN and kin route SIGIO and SIGURG to any pid), and no limits,
    priorities or CPU placement but its own (pid 0).
    """
    rules = [Rule(name) for name in CHILD_DENIED]
    rules.append(Rule("clone", conditions=(Arg(0, 0, mask=CLONE_THREAD),)))
    rules += [Rule("fcntl", conditions=(Arg(1, command),)) for command in _FCNTL_OWNERS]
    rules += [Rule("ioctl", conditions=(Arg(1, request),)) for request in _IOCTL_OWNERS]
    rules += [Rule(name, conditions=(Arg(0, 0, differs=True),)) for name in _OWN_PID_ONLY]
    return rules


def _add(library: ctypes.CDLL, context: int, rule: Rule) -> None:
    number = library.seccomp_syscall_resolve_name(rule.syscall.encode())
    if number < 0:
        return  # not a system call on this architecture or kernel headers: nothing to deny
    compares = (_ArgCompare * max(1, len(rule.conditions)))()
    for index, condition in enumerate(rule.conditions):
        compares[index] = condition.compare()
    action = _ERRNO | (rule.errno_value & 0xFFFF)
    status = library.seccomp_rule_add_array(context, action, number, len(rule.conditions), compares)
    _check(status, f"rule for {rule.syscall}")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise SeccompError(f"libseccomp: {what} failed ({errno.errorcode.get(-status, status)})")


def _library() -> ctypes.CDLL:
    try:
        library = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise SeccompError(f"libseccomp is not installed: {exc}") from exc
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCompare),
    ]
    library.seccomp_load.argtypes = [ctypes.c_void_p]
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    return library
