"""The burst: how long one client's request waits while ``n`` others arrive together.

A probe client on its own keep-alive connection first measures its idle latency (the median
of ``idle_probes`` GETs). Then ``n`` connections open at once, each sending one request as
soon as it is connected (a GET, or a POST with a ``post_bytes`` body), while the probe sends
GETs back to back; when every burst response is in, the probe stops. The delay is the
slowest probe during the burst minus the idle median, in ms. The probe is a process of its
own; the burst is non-blocking sockets and one ``selectors`` loop.
"""

from __future__ import annotations

import json
import select
import selectors
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._http import Connection, HttpError


@dataclass
class Burst:
    target: str
    method: str  # "GET" or "POST 64 KiB"
    requests: int
    answered: int  # burst requests that got a whole response
    idle_ms: float  # the probe's median latency before the burst
    probes: int  # probe requests answered during the burst
    worst_ms: float  # the slowest of them
    delay_ms: float  # worst_ms - idle_ms
    burst_s: float  # from the first connect to the last burst response
    problems: list[str] = field(default_factory=list)


def _request(port: int, path: str, post_bytes: int) -> bytes:
    host = f"Host: 127.0.0.1:{port}\r\n"
    if not post_bytes:
        return f"GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode()
    head = f"POST {path} HTTP/1.1\r\n{host}Content-Length: {post_bytes}\r\nConnection: close\r\n"
    return head.encode() + b"\r\n" + b"x" * post_bytes


class _Client:
    __slots__ = ("out", "received", "sock")

    def __init__(self, sock: socket.socket, out: bytes) -> None:
        self.sock = sock
        self.out = memoryview(out)
        self.received = 0


def _run_burst(port: int, request: bytes, n: int, deadline: float) -> tuple[int, list[str]]:
    """Open ``n`` connections, each sending ``request`` at once; read every response to the
    close (``Connection: close``); (how many were answered, problems)."""
    sel = selectors.DefaultSelector()
    problems: list[str] = []
    answered = 0
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sel.register(sock, selectors.EVENT_WRITE, _Client(sock, request))
    pending = n
    while pending and time.monotonic() < deadline:
        for key, events in sel.select(timeout=0.5):
            client: _Client = key.data
            try:
                if events & selectors.EVENT_WRITE and client.out:
                    sent = client.sock.send(client.out)
                    client.out = client.out[sent:]
                    if not client.out:
                        sel.modify(client.sock, selectors.EVENT_READ, client)
                    continue
                data = client.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError as exc:
                data = b""
                if len(problems) < 3:
                    problems.append(f"a burst connection failed: {exc}")
            if data:
                client.received += len(data)
                continue
            if client.received:
                answered += 1
            sel.unregister(client.sock)
            client.sock.close()
            pending -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    if pending:
        problems.append(f"{pending} burst requests unanswered at the time bound")
    return answered, problems


def _probe_main(port: int, path: str, idle_probes: int, time_bound_s: float) -> None:
    """The probe process: idle probes, then "go" on stdin starts back-to-back probes until
    stdin says anything more; prints the idle and busy latencies (seconds) as JSON."""
    probe = Connection("127.0.0.1", port, timeout_s=time_bound_s)
    idle: list[float] = []
    for _ in range(idle_probes):
        t0 = time.perf_counter()
        probe.get(path)
        idle.append(time.perf_counter() - t0)
        time.sleep(0.005)
    print("ready", flush=True)
    sys.stdin.readline()
    during: list[float] = []
    error = ""
    while not select.select([sys.stdin], [], [], 0)[0]:
        t0 = time.perf_counter()
        try:
            probe.get(path)
        except (OSError, HttpError) as exc:
            error = f"the probe failed during the burst: {exc}"
            break
        during.append(time.perf_counter() - t0)
    print(json.dumps({"idle": idle, "during": during, "error": error}), flush=True)


def burst_delay(
    target: str,
    port: int,
    path: str,
    n: int = 500,
    *,
    post_bytes: int = 0,
    idle_probes: int = 20,
    time_bound_s: float = 30.0,
    probe_cpus: str | None = None,
) -> Burst:
    """The probe runs in a process of its own (no GIL shared with the burst loop)."""
    argv = [sys.executable, "-c", _PROBE, str(port), path, str(idle_probes), str(time_bound_s)]
    if probe_cpus:
        argv = ["taskset", "-c", probe_cpus, *argv]
    probe = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert probe.stdin is not None and probe.stdout is not None
    problems: list[str] = []
    try:
        if probe.stdout.readline().strip() != "ready":
            raise HttpError("the probe process failed before the burst")
        probe.stdin.write("go\n")
        probe.stdin.flush()
        started = time.perf_counter()
        answered, problems = _run_burst(
            port, _request(port, path, post_bytes), n, time.monotonic() + time_bound_s
        )
        burst_s = time.perf_counter() - started
        probe.stdin.write("stop\n")
        probe.stdin.flush()
        report = json.loads(probe.stdout.readline())
    finally:
        probe.kill()
        probe.wait()
    if report["error"]:
        problems.append(report["error"])
    during: list[float] = report["during"]
    idle_ms = statistics.median(report["idle"]) * 1000
    worst_ms = max(during) * 1000 if during else 0.0
    if not during:
        problems.append("no probe was answered during the burst")
    return Burst(
        target=target,
        method=f"POST {post_bytes // 1024} KiB" if post_bytes else "GET",
        requests=n,
        answered=answered,
        idle_ms=round(idle_ms, 2),
        probes=len(during),
        worst_ms=round(worst_ms, 2),
        delay_ms=round(worst_ms - idle_ms, 2),
        burst_s=round(burst_s, 3),
        problems=problems,
    )


_ROOT = str(Path(__file__).resolve().parent.parent)
_PROBE = (
    f"import sys; sys.path.insert(0, {_ROOT!r}); from bench._burst import _probe_main; "
    "_probe_main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))"
)
