"""Binding a listening socket, with errors a person can act on (no trio: the supervisor of
``--workers N`` binds with it too)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from ..core._addr import format_host_port

__all__ = ["ListenError", "bind_socket", "inherited_socket", "socket_address"]


class ListenError(Exception):
    """The listen address cannot be bound; the message names it and the reason."""


def bind_socket(
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    backlog: int = 4096,
    key: str = "",
    before_listen: Callable[[socket.socket], None] | None = None,
    error: type[ListenError] = ListenError,
) -> socket.socket:
    """A listening stdlib socket; ``error`` names the address, the setting (``key``) and the
    reason. ``before_listen`` may refuse what was bound before one connection can arrive."""
    where = format_host_port(host, port) + (f" ({key})" if key else "")
    try:
        # An ASCII host as bytes, as trio passes it: a str goes through Python's idna codec,
        # whose import (stringprep, unicodedata: ~0.3 MiB) no ASCII name needs.
        name = host.encode("ascii") if host.isascii() else host
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise error(f"cannot listen on {where}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Several worker processes accept on one port; the kernel spreads connections.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        if before_listen is not None:
            before_listen(sock)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise error(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


def socket_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return format_host_port(host, port)


def inherited_socket() -> socket.socket | None:
    """In a worker of ``--workers N``: the listening socket its supervisor bound (a
    descriptor it inherited), shared by all the workers; None in a process of its own."""
    fd = os.environ.pop("TRIOPROXY_LISTEN_FD", "")
    if not fd:
        return None
    return socket.socket(fileno=int(fd))
