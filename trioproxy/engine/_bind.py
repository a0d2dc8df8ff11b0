"""Binding a listening socket, with errors a person can act on (no trio: the supervisor of
``--workers N`` binds with it too)."""

from __future__ import annotations

import socket

from ..core._addr import format_host_port

__all__ = ["ListenError", "bind_socket", "socket_address"]


class ListenError(Exception):
    """The listen address cannot be bound; the message names it and the reason."""


def bind_socket(
    host: str, port: int, *, reuse_port: bool = False, backlog: int = 4096
) -> socket.socket:
    """A listening stdlib socket; ListenError names the address and the reason."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f"cannot listen on {format_host_port(host, port)}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Several worker processes accept on one port; the kernel spreads connections.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {format_host_port(host, port)}: {reason}") from exc
    return sock


def socket_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return format_host_port(host, port)
