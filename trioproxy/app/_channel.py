"""The supervisor-worker channel's framing: length-prefixed marshal'd tuples (no I/O, no trio).

Each worker has one Unix stream socket to the supervisor (a socketpair made at spawn). The
worker says ``("ready",)`` once it listens; then it answers the supervisor's questions, one at
a time, in order: ``("ping",)`` gets ``("pong",)``, ``("metrics",)`` gets ``("metrics",
snapshot)``, ``("reload", file, raw)`` gets ``("reloaded", problem)`` (``""`` when it took the
new configuration), ``("control", method, target, body)`` gets ``("controlled", status,
content_type, body, clock_offset_s)``. The socket is also
the worker's lifeline: end of file means the supervisor is gone. Only plain values cross it
(tuples, bytes, str, numbers), so `marshal` is enough and cheap, and nothing is ever executed.
"""

from __future__ import annotations

import marshal
import os
import struct
from typing import Any

__all__ = ["MAX_FRAME_BYTES", "ChannelError", "FrameBuffer", "frame", "worker_config"]

# A metrics snapshot at the hostname cap is a few hundred KiB; nothing legitimate is near this.
MAX_FRAME_BYTES = 64 << 20
_LENGTH = struct.Struct(">I")

Message = tuple[Any, ...]


class ChannelError(Exception):
    """The other end sent something that is not a frame of ours."""


def frame(message: Message) -> bytes:
    body = marshal.dumps(message, 4)
    return _LENGTH.pack(len(body)) + body


class FrameBuffer:
    """Bytes in, whole messages out."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def next(self) -> Message | None:
        """The next whole message, or None until more bytes arrive."""
        if len(self._data) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._data)
        if length > MAX_FRAME_BYTES:
            raise ChannelError(f"frame of {length} bytes")
        end = _LENGTH.size + length
        if len(self._data) < end:
            return None
        body = bytes(self._data[_LENGTH.size : end])
        del self._data[:end]
        try:
            message = marshal.loads(body)
        except (ValueError, EOFError, TypeError) as exc:
            raise ChannelError(f"undecodable frame: {exc}") from None
        if not isinstance(message, tuple) or not message:
            raise ChannelError("a frame that is not a message")
        return message


def worker_config() -> tuple[str, bytes] | None:
    """In a worker: the configuration file's name and the bytes the supervisor runs (a
    memfd it was started with); None when run on its own."""
    fd = os.environ.pop("TRIOPROXY_CONFIG_FD", "")
    if not fd:
        return None
    with open(int(fd), "rb") as file:
        return os.environ.pop("TRIOPROXY_CONFIG_FILE", ""), file.read()
