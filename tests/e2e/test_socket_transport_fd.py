"""`SocketTransport` over a trio socket that keeps no stdlib socket inside (the private one
its reads and writes call): the same calls made on the fd instead, with the same answers
(bytes, None when a read or a write would wait, b"" at EOF, EBADF once closed)."""

from __future__ import annotations

import socket

import pytest
import trio

from trioproxy.engine._transport import SocketTransport


class BareTrioSocket(trio.socket.SocketType):
    """What `SocketTransport` asks of a trio socket, with the stdlib socket out of its reach."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._inner = sock

    def fileno(self) -> int:
        return self._inner.fileno()

    def getpeername(self) -> str:
        return "peer"

    def close(self) -> None:
        self._inner.close()


def test_reads_and_writes_reach_the_fd() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    transport = SocketTransport(BareTrioSocket(ours))
    try:
        assert transport.read_nowait(100) is None  # nothing there: would wait
        theirs.sendall(b"request")
        assert transport.read_nowait(100) == b"request"
        assert transport.write_nowait(memoryview(b"answer")) == 6
        assert theirs.recv(100) == b"answer"
        block = memoryview(b"x" * 65536)
        while transport.write_nowait(block) is not None:  # until the buffers are full
            pass
        theirs.shutdown(socket.SHUT_WR)
        assert transport.read_nowait(100) == b""  # EOF
        assert not transport.closed
    finally:
        transport.close()
        theirs.close()
    assert transport.closed
    with pytest.raises(OSError):
        transport.read_nowait(100)
    with pytest.raises(OSError):
        transport.write_nowait(memoryview(b"late"))
