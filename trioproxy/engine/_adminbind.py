"""Binding the admin listener's socket, on loopback only (no trio: the supervisor of
``--workers N`` serves the admin endpoints without it).

The platform routes only port 80 into the container, and the admin endpoints tell anyone who
can reach them about the upstream and the traffic: they must stay on loopback. The config
loader already rejects other addresses; `bind_admin_socket` checks again, on what the address
resolves to and on what was actually bound, so Settings built in code cannot get around it.
"""

from __future__ import annotations

import ipaddress
import socket

from ..core._addr import parse_host_port
from ._bind import ListenError, bind_socket

__all__ = ["MAX_CONNECTIONS", "AdminListenError", "bind_admin_socket", "is_loopback"]

# A handful of probes and one scraper at a time; more are held in the kernel's backlog.
MAX_CONNECTIONS = 8


class AdminListenError(ListenError):
    """The admin address is not a loopback address (or cannot be bound)."""


def bind_admin_socket(address: str) -> socket.socket:
    """Bind ``HOST:PORT`` for the admin listener, refusing anything but loopback."""
    try:
        host, port = parse_host_port(address)
    except ValueError as exc:
        raise AdminListenError(f"admin.listen {address!r}: {exc}") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:  # (not `exc` again: mypyc types a shared name by its first use)
        raise AdminListenError(f"cannot listen on {address} (admin.listen): {error}") from error
    public = sorted({str(info[4][0]) for info in infos if not is_loopback(str(info[4][0]))})
    if public:
        raise AdminListenError(_refusal(address, ", ".join(public)))

    def loopback_only(sock: socket.socket) -> None:
        bound = str(sock.getsockname()[0])  # what the kernel bound, before listen()
        if not is_loopback(bound):
            raise AdminListenError(_refusal(address, bound))

    return bind_socket(
        host,
        port,
        backlog=MAX_CONNECTIONS * 4,
        key="admin.listen",
        before_listen=loopback_only,
        error=AdminListenError,
    )


def _refusal(address: str, public: str) -> str:
    return (
        f"refusing to open the admin listener on {address}: it is not a loopback address "
        f"({public}); use 127.0.0.1, [::1] or localhost (admin.listen)"
    )


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 scope id
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1 (Python < 3.13 says no)
    return address.is_loopback
