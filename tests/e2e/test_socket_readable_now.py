"""`SocketTransport.readable_now` (the pool's check of every connection it reuses), with its
one poll object per connection: the answer follows the socket's state from call to call, and
a closed connection reads as gone even when its old fd number belongs to another socket."""

from __future__ import annotations

import socket

import trio

from trioproxy.engine._transport import SocketTransport


def _transport(sock: socket.socket) -> SocketTransport:
    sock.setblocking(False)
    return SocketTransport(trio.socket.from_stdlib_socket(sock))


async def test_readable_now_follows_the_socket_from_call_to_call() -> None:
    ours, theirs = socket.socketpair()
    transport = _transport(ours)
    try:
        assert not transport.readable_now()  # nothing there
        theirs.sendall(b"unasked")
        assert transport.readable_now()  # bytes nobody asked for
        assert transport.read_nowait(100) == b"unasked"
        assert not transport.readable_now()
        theirs.close()
        assert transport.readable_now()  # EOF
    finally:
        transport.close()
        theirs.close()


async def test_a_closed_connection_reads_as_gone_whoever_has_its_fd_now() -> None:
    ours, theirs = socket.socketpair()
    transport = _transport(ours)
    assert not transport.readable_now()  # (the poll object is made and registered)
    transport.close()
    other, other_far = socket.socketpair()  # likely given the fd number just freed
    try:
        assert transport.readable_now()  # closed: gone, whatever that fd shows
    finally:
        for s in (theirs, other, other_far):
            s.close()
