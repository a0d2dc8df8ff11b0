"""Opening the listening socket, with errors a person can act on."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from ..core._addr import format_host_port
from ._bind import ListenError, bind_socket
from ._transport import Listener, SocketListenerSource, Transport

__all__ = [
    "ListenError",
    "accept_forever",
    "as_listener",
    "bind_socket",
    "bound_address",
    "open_listener",
]

log = logging.getLogger("trioproxy")

# Accept errors that mean "out of a resource for now", not "this listener is broken"
# (the list trio's serve_listeners uses).
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def open_listener(
    host: str, port: int, *, reuse_port: bool = False, backlog: int = 4096
) -> trio.SocketListener:
    """Bind and listen synchronously (before or inside ``trio.run``), IPv4 or IPv6."""
    sock = bind_socket(host, port, reuse_port=reuse_port, backlog=backlog)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def as_listener(listener: trio.SocketListener | Listener) -> Listener:
    """A trio listening socket as a `Listener`; other listeners (memory) as they are."""
    if isinstance(listener, trio.SocketListener):
        return SocketListenerSource(listener)
    return listener


def bound_address(listener: trio.SocketListener | socket.socket) -> str:
    sock = listener.socket if isinstance(listener, trio.SocketListener) else listener
    host, port = sock.getsockname()[:2]
    return format_host_port(host, port)


async def accept_forever(
    listener: Listener,
    slots: trio.Semaphore,
    handlers: trio.Nursery,
    handle: Callable[[Transport], Awaitable[None]],
    *,
    name: str,
    make_room: Callable[[], bool] | None = None,
) -> NoReturn:
    """Accept connections into ``handlers``, each holding one of ``slots`` (released by
    ``handle``). When they are all taken and a client is waiting, ``make_room`` may close an
    idle connection for it; when it cannot, clients wait in the kernel's backlog. Running
    out of file descriptors pauses accepting instead of ending it."""
    task_name = _task_name(handle)
    while True:
        if make_room is not None:
            await _wait_for_slot(listener, slots, make_room)
        await slots.acquire()
        try:
            transport = await listener.accept()
        except OSError as exc:
            slots.release()
            if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                raise
            log.error("%s: accept failed (%s); pausing 100 ms", name, exc.strerror)
            await trio.sleep(0.1)
            continue
        except BaseException:
            slots.release()
            raise
        handlers.start_soon(handle, transport, name=task_name)


def _task_name(handle: object) -> str:
    """The name trio gives ``handle``'s tasks, made once: trio would format one string per
    task, which each idle connection would hold."""
    return f"{getattr(handle, '__module__', None)}.{getattr(handle, '__qualname__', handle)}"


# While every slot is busy, how often a waiting newcomer looks again for a connection that
# has gone idle meanwhile (one that was busy, or was closed for it but had a request to serve).
_ROOM_RECHECK_S = 0.1


async def _wait_for_slot(
    listener: Listener, slots: trio.Semaphore, make_room: Callable[[], bool]
) -> None:
    """Return once a slot is free, closing idle connections for a client that waits."""
    while slots.value == 0:
        await listener.wait_pending()  # a newcomer is in the backlog
        # The closed connection's task frees its slot as it ends, which may take a moment
        # (it may be finishing a request that had arrived): never wait on it alone, look again.
        make_room()
        with trio.move_on_after(_ROOM_RECHECK_S):
            await slots.acquire()
            slots.release()
