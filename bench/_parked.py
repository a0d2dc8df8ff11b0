"""Memory per request parked on a slow origin: RSS growth per request waiting for an answer.

A silent origin accepts every connection and never answers (nor reads: the request waits in
its socket buffer). ``warm`` requests are parked first, the target's RSS is sampled as the
baseline, ``n`` more are parked, and once the origin has accepted all of them and the RSS has
settled it is sampled again: per request is (loaded - baseline) / n. The clients then close;
a proxy that watches its clients lets go of the upstream connections too.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from bench._procs import tree_rss_kib


class SilentOrigin:
    """A listener on 127.0.0.1 that accepts connections, holds them, and never answers."""

    def __init__(self, backlog: int = 4096) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(backlog)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-origin", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        return len(self._held)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def release(self) -> None:
        """Close every connection accepted so far (the proxy sees its upstream go)."""
        held, self._held = self._held, []
        for conn in held:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        self.release()


@dataclass
class ParkedMemory:
    target: str
    requests: int  # asked for
    parked: int  # reached the origin
    rss_baseline_kib: int
    rss_loaded_kib: int
    per_request_bytes: float
    seconds_to_park: float
    problems: list[str] = field(default_factory=list)


def _park(port: int, path: str, count: int, into: list[socket.socket]) -> str | None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n".encode()
    for i in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
            into.append(sock)
            sock.sendall(request)
        except OSError as exc:
            return f"request {i + 1} of {count} could not be sent: {exc}"
    return None


def _settled_rss(pid: int, origin: SilentOrigin, want: int, deadline: float) -> int:
    """The RSS once the origin holds ``want`` connections and the RSS stops moving."""
    while origin.accepted < want and time.monotonic() < deadline:
        time.sleep(0.05)
    last, same = -1, 0
    while same < 3 and time.monotonic() < deadline:  # unchanged over 3 looks of 0.1 s
        time.sleep(0.1)
        now = tree_rss_kib(pid) or 0
        same = same + 1 if now == last else 0
        last = now
    return last if last >= 0 else tree_rss_kib(pid) or 0


def parked_request_memory(
    target: str,
    pid: int,
    port: int,
    origin: SilentOrigin,
    path: str,
    n: int,
    *,
    warm: int = 10,
    time_bound_s: float = 60.0,
) -> ParkedMemory:
    """``port``: the target, whose upstream is ``origin``."""
    deadline = time.monotonic() + time_bound_s
    clients: list[socket.socket] = []
    problems: list[str] = []
    try:
        if (err := _park(port, path, warm, clients)) is not None:
            problems.append(f"warm-up: {err}")
        baseline = _settled_rss(pid, origin, warm, deadline)
        start = origin.accepted
        t0 = time.monotonic()
        if (err := _park(port, path, n, clients)) is not None:
            problems.append(err)
        loaded = _settled_rss(pid, origin, start + n, deadline)
        seconds = time.monotonic() - t0
        parked = origin.accepted - start
        if parked < n:
            problems.append(f"only {parked} of {n} requests reached the origin")
    finally:
        for sock in clients:
            sock.close()
        origin.release()
    return ParkedMemory(
        target=target,
        requests=n,
        parked=parked,
        rss_baseline_kib=baseline,
        rss_loaded_kib=loaded,
        per_request_bytes=round((loaded - baseline) * 1024 / parked, 1) if parked else 0.0,
        seconds_to_park=round(seconds, 2),
        problems=problems,
    )
