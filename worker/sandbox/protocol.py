"""The sandbox's wire formats: JSON headers, raw bytes, and descriptors, over Unix sockets.

Nothing is ever unpickled, so a compromised child can send the worker nothing but data the
worker checks.

- Jobs (worker <-> child, a stream socket pair): a message is two big-endian lengths, a JSON
  object and a body (the upload, the image).
- Commands (worker <-> zygote, a SOCK_SEQPACKET pair): one JSON object per packet, which may
  carry a descriptor (SCM_RIGHTS): the zygote hands the worker each new child's end of a
  socket pair that way, so job data goes straight to the child, never through the zygote.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any, Final

_FRAME: Final = struct.Struct(">II")  # header length, body length
MAX_HEADER: Final = 64 * 1024


class ProtocolError(ConnectionError):
    """The other end sent something that is not a well-formed message."""


def send_message(sock: socket.socket, header: dict[str, Any], body: bytes = b"") -> None:
    data = json.dumps(header).encode()
    sock.sendall(_FRAME.pack(len(data), len(body)) + data)
    if body:
        sock.sendall(body)


def command_socket_pair() -> tuple[socket.socket, socket.socket]:
    """A pair for commands: packets keep their boundaries, so a reply is one read."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_packet(sock: socket.socket, header: dict[str, Any], fd: int | None = None) -> None:
    """One command or reply, with `fd` attached when given."""
    data = json.dumps(header).encode()
    if len(data) > MAX_HEADER:
        raise ProtocolError(f"a packet of {len(data)} bytes is over the limit")
    if fd is None:
        sock.send(data)
    else:
        socket.send_fds(sock, [data], [fd])


def receive_message(
    sock: socket.socket, max_body: int, deadline: float | None = None
) -> tuple[dict[str, Any], bytes]:
    """One message; EOFError if the other end closed, TimeoutError past `deadline`."""
    header_size, body_size = _FRAME.unpack(_receive_exactly(sock, _FRAME.size, deadline))
    _check_sizes(header_size, body_size, max_body)
    header = _decode_header(_receive_exactly(sock, header_size, deadline))
    return header, _receive_exactly(sock, body_size, deadline)


def receive_packet(
    sock: socket.socket, deadline: float | None = None
) -> tuple[dict[str, Any], socket.socket | None]:
    """One packet, and the socket attached to it (None when none came); EOFError if the
    other end closed, TimeoutError past `deadline`."""
    _set_timeout(sock, deadline)
    data, fds, flags, _address = socket.recv_fds(sock, MAX_HEADER + 1, 1)
    attached = socket.socket(fileno=fds[0]) if fds else None
    if not data:
        _close(attached)
        raise EOFError
    if len(data) > MAX_HEADER or flags & socket.MSG_CTRUNC:
        _close(attached)
        raise ProtocolError("a packet is over the limit")
    try:
        return _decode_header(data), attached
    except ProtocolError:
        _close(attached)
        raise


def _check_sizes(header_size: int, body_size: int, max_body: int) -> None:
    if header_size > MAX_HEADER or body_size > max_body:
        raise ProtocolError(f"message of {header_size}+{body_size} bytes is over the limit")


def _decode_header(data: bytes) -> dict[str, Any]:
    """The JSON object a header holds; anything else the other end sent is a ProtocolError."""
    try:
        header = json.loads(data)
    except (ValueError, RecursionError) as exc:  # a child may send whatever it likes
        raise ProtocolError("message header is not JSON") from exc
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    return header


def _set_timeout(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    sock.settimeout(remaining)


def _receive_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        _set_timeout(sock, deadline)
        count = sock.recv_into(view[received:])
        if count == 0:
            raise EOFError
        received += count
    return bytes(buffer)


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()
