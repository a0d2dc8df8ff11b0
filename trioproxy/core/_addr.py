"""Parsing ``HOST:PORT`` strings (pure)."""

from __future__ import annotations

import ipaddress


def parse_host_port(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or (with a default port) a bare host.

    Raises ValueError with a message fit for a user.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        # No port, or an unbracketed IPv6 literal: the whole text is the host.
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        host, port_text = text, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError names the problem
    if not host:
        raise ValueError(f"missing host in {text!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
