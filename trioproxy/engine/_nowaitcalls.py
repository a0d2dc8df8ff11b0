"""`Transport.calls` for a transport whose reads and writes are its own Python methods (the
memory network, the fault wrapper): the socket-style ``recv``/``send`` the wire calls, made of
its ``read_nowait``/``write_nowait``, so that every read and write still goes through those
(the tests meter and patch them)."""

from __future__ import annotations

import errno
from typing import Self


class NowaitCalls:
    """Mixed into a transport that defines ``read_nowait`` and ``write_nowait``."""

    __slots__ = ()

    @property
    def calls(self) -> Self:
        return self

    def read_nowait(self, max_bytes: int) -> bytes | None:
        raise NotImplementedError

    def write_nowait(self, data: memoryview) -> int | None:
        raise NotImplementedError

    def recv(self, max_bytes: int, /) -> bytes:
        data = self.read_nowait(max_bytes)
        if data is None:
            raise BlockingIOError(errno.EAGAIN, "would block")
        return data

    def send(self, data: bytes | memoryview, /) -> int:
        taken = self.write_nowait(memoryview(data))
        if taken is None:
            raise BlockingIOError(errno.EAGAIN, "would block")
        return taken
