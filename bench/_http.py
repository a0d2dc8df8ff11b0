"""A tiny blocking HTTP/1.1 client for readiness probes, body checks and idle connections.

It speaks just enough HTTP/1.1 for the benchmark's GETs: a Content-Length or chunked body,
keep-alive by default. Every socket operation has a timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass


class HttpError(Exception):
    pass


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated fields joined with ", "
    body: bytes


class Connection:
    """One keep-alive connection to ``host:port``."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, path: str) -> Response:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: trioproxy-bench\r\nAccept: */*\r\n\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        head = self._read_until(b"\r\n\r\n", limit=65536)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"bad header line {line!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            raise HttpError("response has neither Content-Length nor chunked body")
        return Response(status=int(parts[1]), headers=headers, body=body)

    def _recv(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise HttpError("connection closed by peer")
        self._buf += data

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while (i := self._buf.find(marker)) < 0:
            if len(self._buf) > limit:
                raise HttpError("response head too long")
            self._recv()
        out, self._buf = self._buf[:i], self._buf[i + len(marker) :]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._recv()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_chunked(self) -> bytes:
        body = bytearray()
        for _ in range(1_000_000):
            size_line = self._read_until(b"\r\n", limit=1024)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # Trailer section, ended by an empty line.
                while self._read_until(b"\r\n", limit=65536):
                    pass
                return bytes(body)
            body += self._read_exact(size)
            self._read_exact(2)
        raise HttpError("too many chunks")


def get_once(host: str, port: int, path: str, timeout_s: float = 5.0) -> Response:
    with Connection(host, port, timeout_s) as conn:
        return conn.get(path)


def wait_serving(
    host: str, port: int, path: str, timeout_s: float, *, alive: Callable[[], bool] | None = None
) -> Response:
    """Poll until ``GET path`` answers (any status); raise HttpError on timeout.

    ``alive`` is an optional callable returning False once the server process is gone.
    """
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise HttpError(f"server on {host}:{port} exited before serving")
        try:
            return get_once(host, port, path, timeout_s=2.0)
        except (OSError, HttpError) as exc:
            last = exc
            time.sleep(0.05)
    raise HttpError(f"{host}:{port} not serving {path} after {timeout_s:.0f} s: {last}")
