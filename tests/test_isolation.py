"""A render child, attacked from inside as a compromised decoder would attack it.

The test hook (`RENDERQ_SANDBOX_TEST_HOOK`, refused by the real entry points) runs attacker
code in a real child built by the real sandbox, after its confinement, and reports what the
code could do. Each attack must fail; each test also shows its probe works where it should
(a read of the child's own files, a marker found in the job it served), so no check here
passes because the probe itself is broken.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image, PngImagePlugin

from renderq.errors import RenderqError
from renderq.jobs import Job, new_job_id
from renderq.settings import Settings
from renderq.vocabulary import JobKind
from tests.conftest import ROOT, environ_for, run_to_end
from tests.processes import INSTALLED_PYTHON, Processes, RedisServer, wait_until
from worker.sandbox import Sandbox

ATTACKER_PRELUDE = """
import ctypes, errno, glob, os, signal, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    if getattr(libc, name)(*args) != 0:
        raise OSError(ctypes.get_errno(), name)
def attempt(name, action):
    try:
        action()
    except OSError as exc:
        report[name] = "refused: " + (errno.errorcode.get(exc.errno) or str(exc))
    else:
        report[name] = "SUCCEEDED"
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(Settings.from_env({"RENDERQ_SANDBOX_TEST_HOOK": "1"}))
    box.start()
    yield box
    box.close()


def attack(sandbox: Sandbox, code: str, lane: str = JobKind.IMAGE, **after: Any) -> dict[str, Any]:
    """Run `code` in a fresh child of `lane` (after the job in `after`, if any)."""
    reply = sandbox.run_hook(ATTACKER_PRELUDE + code, JobKind(lane), **after)
    assert reply.get("ok"), reply.get("error")
    report: dict[str, Any] = reply["report"]
    return report


def refused(report: dict[str, Any]) -> dict[str, Any]:
    """The attempts that were not refused: must be empty."""
    return {name: outcome for name, outcome in report.items() if outcome == "SUCCEEDED"}


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A Redis with an append-only file, as `make run`'s Redis has."""
    directory = tmp_path_factory.mktemp("aof")
    server = RedisServer.start(directory, aof=True)
    try:
        wait_until(lambda: any(directory.rglob("*.aof*")), what="the AOF")
        yield next(path for path in directory.rglob("*.aof*") if path.is_file()), server.port
    finally:
        server.stop()


def test_the_child_reaches_no_file_of_renderq_or_of_other_clients(
    sandbox: Sandbox, aof_redis: tuple[Path, int]
) -> None:
    aof, _port = aof_redis
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    targets = [
        str(aof),
        str(aof.parent),
        str(var),
        str(ROOT / "renderq"),
        "/var/lib/renderq/redis",
        "/etc/renderq/redis-password",
        "/etc/renderq/redis.conf",
        "/etc/passwd",
        "/etc/ImageMagick-6/delegates.xml",
        "/root",
        "/home",
        tempfile.gettempdir() + "/pytest-of-root",
    ]
    report = attack(
        sandbox,
        f"""
def read(path):
    return os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(1)
for path in {targets!r}:
    attempt("read " + path, lambda: read(path))
attempt("write /usr", lambda: open("/usr/renderq-was-here", "w"))
attempt("write /", lambda: open("/renderq-was-here", "w"))
report["own /tmp writable"] = open("/tmp/mine", "w").write("x") == 1
report["own status readable"] = "Cap" in open("/proc/self/status").read()
""",
    )
    assert report.pop("own /tmp writable") is True
    assert report.pop("own status readable") is True
    assert refused(report) == {}


def test_the_child_cannot_see_another_sandbox_or_its_siblings(sandbox: Sandbox) -> None:
    """A second sandbox (another worker's) writes a marker in its child's /tmp and waits;
    meanwhile a child of the first looks for it everywhere it could be."""
    marker = "marker-" + secrets.token_hex(8)
    other = Sandbox(Settings.from_env({"RENDERQ_SANDBOX_TEST_HOOK": "1"}))
    other.start()
    hider = threading.Thread(
        target=attack,
        args=(other, f"open('/tmp/{marker}', 'w').write('secret')\nimport time; time.sleep(3)"),
    )
    hider.start()
    try:
        time.sleep(1)
        report = attack(
            sandbox,
            f"""
seen = glob.glob("/tmp/*") + glob.glob("/proc/*/root/tmp/*") + glob.glob("/proc/*/cwd/tmp/*")
report["marker seen"] = [path for path in seen if {marker!r} in path]
report["own tmp"] = os.listdir("/tmp")
report["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
for pid in report["pids"]:
    if pid != os.getpid():
        attempt(f"read /proc/{{pid}}/environ", lambda: open(f"/proc/{{pid}}/environ").read())
        attempt(f"list /proc/{{pid}}/root", lambda: os.listdir(f"/proc/{{pid}}/root/"))
        attempt(f"read /proc/{{pid}}/mem", lambda: open(f"/proc/{{pid}}/mem", "rb"))
""",
        )
    finally:
        hider.join()
        other.close()
    assert report.pop("marker seen") == []
    assert report.pop("own tmp") == []
    # Only this sandbox's own processes are visible: bubblewrap's init, the zygote, the
    # children; never the worker, the front or Redis.
    assert len(report.pop("pids")) <= 6
    assert refused(report) == {}


def test_the_child_cannot_signal_trace_or_exec(sandbox: Sandbox) -> None:
    renderq_pids = [os.getpid(), os.getppid()]
    report = attack(
        sandbox,
        f"""
for pid in {renderq_pids!r} + [1, os.getppid()]:
    attempt(f"read /proc/{{pid}}/environ", lambda: open(f"/proc/{{pid}}/environ").read())
    attempt(f"kill {{pid}}", lambda: os.kill(pid, 0))
    attempt(f"ptrace {{pid}}", lambda: call("ptrace", 16, pid, 0, 0))  # PTRACE_ATTACH
attempt("kill every process", lambda: os.kill(-1, 0))
attempt("kill the process group", lambda: os.kill(0, 0))
attempt("ptrace me", lambda: call("ptrace", 0, 0, 0, 0))  # PTRACE_TRACEME
attempt("execve /bin/sh", lambda: os.execv("/bin/sh", ["sh", "-c", "true"]))
attempt("fork", lambda: os.fork() == 0 and os._exit(0))
attempt("setsid", os.setsid)
attempt("unshare a user namespace", lambda: call("unshare", 0x10000000))
attempt("setns", lambda: call("setns", os.open("/proc/1/ns/net", os.O_RDONLY), 0))
attempt("mount", lambda: call("mount", b"t", b"/tmp", b"tmpfs", 0, None))
attempt("umount /tmp", lambda: call("umount2", b"/tmp", 2))
attempt("kill itself", lambda: os.kill(os.getpid(), 0))
report["runs Python"] = os.getpid() > 0
""",
    )
    assert report.pop("runs Python") is True
    assert refused(report) == {}


def test_the_child_cannot_reach_its_siblings_or_the_zygote(sandbox: Sandbox) -> None:
    """The zygote and the other children run as the same user in the same PID namespace:
    no signal by any route, no limits, priorities or CPU placement of theirs."""
    report = attack(
        sandbox,
        """
import fcntl, resource, termios
zygote = os.getppid()
reader, writer = os.pipe()
attempt("F_SETOWN on the zygote", lambda: fcntl.fcntl(reader, fcntl.F_SETOWN, zygote))
attempt("F_SETOWN high bits", lambda: call("fcntl", reader, 8 | (1 << 32), zygote))
attempt("F_SETSIG", lambda: fcntl.fcntl(reader, 10, signal.SIGKILL))
attempt("F_SETOWN_EX", lambda: fcntl.fcntl(reader, 15, b"\\0" * 8))
attempt("FIOSETOWN", lambda: fcntl.ioctl(reader, 0x8901, zygote.to_bytes(4, "little")))
attempt("SIOCSPGRP", lambda: fcntl.ioctl(reader, 0x8902, zygote.to_bytes(4, "little")))
attempt("prlimit the zygote", lambda: resource.prlimit(zygote, resource.RLIMIT_NOFILE, (1, 1)))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, zygote, 19))
attempt("sched_setaffinity", lambda: os.sched_setaffinity(zygote, {0}))
idle = os.sched_param(0)
attempt("sched_setscheduler", lambda: os.sched_setscheduler(zygote, os.SCHED_IDLE, idle))
resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
report["limits its own"] = resource.getrlimit(resource.RLIMIT_NOFILE) == (32, 32)
""",
    )
    assert report.pop("limits its own") is True
    assert refused(report) == {}
    # And the zygote is unharmed: the next child starts and renders.
    assert sandbox.render(image_job(), png_with_marker(b"after"))


def test_a_child_that_answers_out_of_turn_is_never_given_another_job(sandbox: Sandbox) -> None:
    """A compromised child sends a malformed reply, hoping to be kept for the next job (and
    to answer that one with a forged image): it is retired at once."""
    arm = """
import json, struct
from worker.sandbox import child
replies = iter([b"[" * 60000, b"{}"])
def forged(job, upload, settings):
    header = next(replies)
    return {"raw": header.decode()}, b"FORGED"
def send_raw(sock, header, body=b""):
    data = header["raw"].encode() if "raw" in header else json.dumps(header).encode()
    sock.sendall(struct.pack(">II", len(data), len(body)) + data + body)
child.render_one = forged
child.send_message = send_raw
report["armed"] = True
"""
    assert sandbox.run_hook(arm, JobKind.IMAGE, keep=True) == {
        "ok": True,
        "report": {"armed": True},
    }
    with pytest.raises(RenderqError) as failed:
        sandbox.render(image_job(), png_with_marker(b"first"))
    assert failed.value.code == "render_crashed"
    image = sandbox.render(image_job(), png_with_marker(b"victim"))
    assert image != b"FORGED" and image.startswith(b"\x89PNG")


def test_the_child_has_no_network_and_no_socket(
    sandbox: Sandbox, aof_redis: tuple[Path, int], tmp_path: Path
) -> None:
    _aof, redis_port = aof_redis
    listener = socket.socket(socket.AF_UNIX)
    path = tmp_path / "renderq.sock"
    listener.bind(str(path))
    listener.listen()
    report = attack(
        sandbox,
        f"""
def connect(family, address):
    with socket.socket(family) as sock:
        sock.settimeout(2)
        sock.connect(address)
attempt("tcp to redis", lambda: connect(socket.AF_INET, ("127.0.0.1", {redis_port})))
attempt("unix socket by path", lambda: connect(socket.AF_UNIX, {str(path)!r}))
attempt("abstract unix socket", lambda: connect(socket.AF_UNIX, "\\0renderq"))
attempt("socketpair", lambda: socket.socketpair())
lines = open("/proc/net/dev").readlines()[2:]
report["interfaces"] = [line.split(":")[0].strip() for line in lines]
""",
    )
    listener.close()
    assert report.pop("interfaces") == ["lo"]
    assert refused(report) == {}


@pytest.mark.parametrize("lane", ["image", "text"])
def test_the_child_keeps_no_capability_and_no_privilege(sandbox: Sandbox, lane: str) -> None:
    report = attack(
        sandbox,
        """
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    report[field] = status[field].strip()
import resource
report["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)
report["cpu hard"] = resource.getrlimit(resource.RLIMIT_CPU)[1]
report["as hard"] = resource.getrlimit(resource.RLIMIT_AS)[1]
report["uid"] = os.getuid()
""",
        lane,
    )
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(report[field], 16) == 0, field
    assert report["NoNewPrivs"] == "1"
    assert report["Seccomp"] == "2"
    assert report["nproc"] == [0, 0]
    assert 0 < report["cpu hard"] < 2**62
    assert 0 < report["as hard"] < 2**62
    render_uid = int(subprocess.check_output(["id", "-u", Settings().render_user]))
    assert report["uid"] == render_uid
    assert render_uid not in (0, int(subprocess.check_output(["id", "-u", "renderq"])))


def png_with_marker(marker: bytes) -> bytes:
    """A PNG carrying `marker` in a text chunk and in its pixels' neighbourhood of bytes."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker.decode())
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def image_job() -> Job:
    request = {"ops": [{"op": "resize", "width": 32}], "format": "png", "engine": "pillow"}
    return Job(id=new_job_id(), kind=JobKind.IMAGE, engine="pillow", format="png", request=request)


MEMORY_SCAN = """
import sys
libc.prctl(4, 1, 0, 0, 0)  # dumpable, to read its own memory as an attacker would
needles = {name: bytes.fromhex(text) for name, text in HEX.items()}
buffer = bytearray(1 << 20)
view = memoryview(buffer)
# Where the needles and the scan buffer themselves live: a match there is the search's own.
ours = [(id(needle) + sys.getsizeof(b"") - 1, len(needle)) for needle in needles.values()]
ours.append((ctypes.addressof(ctypes.c_char.from_buffer(buffer)), len(buffer)))
def is_ours(address):
    return any(start <= address < start + size for start, size in ours)
regions = []
for line in open("/proc/self/maps"):
    span, perms = line.split()[:2]
    if perms.startswith("r"):
        regions.append(tuple(int(x, 16) for x in span.split("-")))
found = {name: False for name in needles}
with open("/proc/self/mem", "rb", 0) as mem:
    for start, end in regions:
        position = start
        while position < end:
            size = min(len(buffer), end - position)
            try:
                mem.seek(position)
                count = mem.readinto(view[:size])
            except (OSError, ValueError, OverflowError):
                break
            for name, needle in needles.items():
                at = buffer.find(needle, 0, count)
                while at >= 0:
                    found[name] = found[name] or not is_ours(position + at)
                    at = buffer.find(needle, at + 1, count)
            if position + size >= end:
                break
            position += size - 64  # chunks overlap: a marker across two is still seen
report.update(found)
"""


def test_no_earlier_job_is_left_in_a_child(sandbox: Sandbox) -> None:
    """Client A's image job, then client C's: the child that served C holds none of A's
    bytes, nor does the text child. The scan proves it can see: it finds a copy of a
    planted marker that the attacker code made in its own heap."""
    marker_a = b"client-A-" + secrets.token_hex(12).encode()
    marker_c = b"client-C-" + secrets.token_hex(12).encode()
    planted = b"planted-" + secrets.token_hex(12).encode()
    sandbox.render(image_job(), png_with_marker(marker_a * 50))
    markers = {"a": marker_a.hex(), "planted": planted.hex()}
    scan = f"HEX = {markers!r}\ncopy = bytearray.fromhex(HEX['planted'])\n" + MEMORY_SCAN
    after_c = attack(sandbox, scan, job=image_job(), upload=png_with_marker(marker_c))
    assert after_c == {"a": False, "planted": True}
    assert attack(sandbox, scan, lane="text") == {"a": False, "planted": True}


def test_the_worker_keeps_no_upload(processes_with_worker: tuple[str, int]) -> None:
    """The worker hands an upload to its child and keeps no copy of it."""
    base, worker_pid = processes_with_worker
    marker = b"upload-" + secrets.token_hex(12).encode()
    payload = png_with_marker(marker) + os.urandom(200_000)  # past the IEND: never decoded
    response = httpx.post(
        f"{base}/jobs", content=payload, headers={"content-type": "image/png"}, timeout=30
    )
    assert response.status_code == 202, response.text
    done = httpx.get(f"{base}{response.headers['location']}?wait=20", timeout=30)
    assert done.status_code == 200
    time.sleep(0.2)
    assert not _memory_holds(worker_pid, marker)


def _memory_holds(pid: int, marker: bytes) -> bool:
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if marker in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


@pytest.fixture
def processes_with_worker(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    procs = Processes(redis_url, tmp_path, environ_for(redis_url))
    try:
        base = procs.start_front()
        worker = procs.start("worker")
        procs.wait_for_log(worker, "worker_started")
        yield base, worker.pid
    finally:
        procs.stop_all()


def test_the_sandbox_sees_only_renderq_policy(sandbox: Sandbox) -> None:
    report = attack(
        sandbox,
        """
from wand.image import Image
from wand.exceptions import PolicyError
# HEIC shares its module with AVIF, which the policy allows: its coder must stay refused.
heic = b"\\x00\\x00\\x00\\x18ftypheic\\x00\\x00\\x00\\x00mif1heic"
for fmt, blob in (
    ("mvg", b"viewbox 0 0 1 1"), ("pdf", b"%PDF-1.4"), ("svg", b"<svg/>"), ("heic", heic)
):
    try:
        Image(blob=blob, format=fmt)
        report[fmt] = "read"
    except PolicyError:
        report[fmt] = "refused by policy"
places = ["/etc/ImageMagick-6/*", "/usr/lib/*/ImageMagick-*/**/*", "/usr/share/ImageMagick-*/*"]
found = [path for place in places for path in glob.glob(place, recursive=True)]
report["policies"] = sorted(path for path in found if path.endswith("policy.xml"))
""",
    )
    assert report.pop("policies") == ["/etc/ImageMagick-6/policy.xml"]
    assert set(report.values()) == {"refused by policy"}


def test_a_layer_report_names_every_layer(sandbox: Sandbox) -> None:
    layers = sandbox.layers
    for layer in ("identity", "namespaces", "network", "mounts", "seccomp", "capabilities"):
        assert layers[layer] == "ok"
    for layer in ("private_tmp", "no_processes", "no_sockets", "limits", "seccomp"):
        assert layers[f"child_{layer}"] == "ok"
    assert sandbox.weakened == {}
    json.dumps(layers)


def test_test_hooks_are_refused_by_default() -> None:
    box = Sandbox(Settings())
    box.start()
    try:
        reply = box.run_hook("report['ran'] = True")
    finally:
        box.close()
    assert reply == {"ok": False, "error": "test hooks are disabled"}


@pytest.mark.parametrize("module", ["worker", "service"])
def test_real_entry_points_refuse_the_test_hook(module: str, redis_url: str) -> None:
    hook = {"RENDERQ_SANDBOX_TEST_HOOK": "1"}
    done = run_to_end([INSTALLED_PYTHON, "-m", module], redis_url, env=hook)
    assert done.returncode == 2
    assert b"RENDERQ_SANDBOX_TEST_HOOK is for tests only" in done.stderr
