"""One peer floods, everyone else waits? A million one-byte chunks through the proxy.

    .venv/bin/python bench/flood.py [--chunks 1000000] [--parser h11|h11-mypyc]

A small trio + h11 origin (this file, ``--serve-origin``) answers ``/small`` with two bytes,
streams ``/chunks/N`` as N one-byte chunks and drains any request body. trioproxy runs alone
on CPU 1, the origin and the clients on CPU 0. Four probe clients send ``GET /small`` every
10 ms throughout; the flood runs once as an upload and once as a download. Reported: the
probes' p50/p99 before and during each flood (the isolation target: p99 ≤ 50 ms
during the flood) and the proxy's CPU time per chunk (from /proc).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h11
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._procs import CLK_TCK, ProcessRegistry, cpu_ticks, free_port

PROBES = 4
PROBE_PAUSE_S = 0.01


# --- The origin (a separate process) --------------------------------------------------------


async def serve_origin(port: int) -> None:
    await trio.serve_tcp(_origin_connection, port, host="127.0.0.1")


async def _origin_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    try:
        while True:
            request = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(1 << 20))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif not isinstance(event, h11.Data):
                    return
            assert request is not None
            await _answer(stream, conn, request.target)
            conn.start_next_cycle()
    except (trio.BrokenResourceError, h11.ProtocolError):
        return


async def _answer(stream: trio.SocketStream, conn: h11.Connection, target: bytes) -> None:
    if target.startswith(b"/chunks/"):
        count = int(target.split(b"/")[2])
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])))
        piece = b"1\r\nx\r\n" * 10000  # h11's own framing, written in bulk
        conn.send(h11.Data(data=b"x" * count))  # keep h11's byte count right
        for _ in range(count // 10000):
            await stream.send_all(piece)
        await stream.send_all(b"0\r\n\r\n")
        conn.send(h11.EndOfMessage())
        return
    headers = [(b"Content-Length", b"2")]
    await stream.send_all(
        conn.send(h11.Response(status_code=200, headers=headers))
        + conn.send(h11.Data(data=b"ok"))
        + conn.send(h11.EndOfMessage())
    )


# --- The clients ----------------------------------------------------------------------------


async def probe(address: tuple[str, int], latencies: list[float], stop: trio.Event) -> None:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        while not stop.is_set():
            started = time.perf_counter()
            await stream.send_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while not reply.endswith(b"\r\n\r\nok"):
                reply += await stream.receive_some(65536)
            latencies.append(time.perf_counter() - started)
            await trio.sleep(PROBE_PAUSE_S)


async def upload_flood(address: tuple[str, int], chunks: int) -> None:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        await stream.send_all(head)
        piece = b"1\r\nx\r\n" * 10000
        for _ in range(chunks // 10000):
            await stream.send_all(piece)
        await stream.send_all(b"0\r\n\r\n")
        reply = b""
        while not reply.endswith(b"ok"):
            reply += await stream.receive_some(65536)


async def download_flood(address: tuple[str, int], chunks: int) -> None:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(b"GET /chunks/%d HTTP/1.1\r\nHost: x\r\n\r\n" % chunks)
        tail = b""
        while not tail.endswith(b"0\r\n\r\n"):
            data = await stream.receive_some(1 << 20)
            if not data:
                raise RuntimeError("the proxy closed the flood's connection")
            tail = (tail + data)[-16:]


async def measure(address: tuple[str, int], proxy_pid: int, chunks: int) -> dict[str, str]:
    results: dict[str, str] = {}
    for name, flood in (("idle", None), ("upload", upload_flood), ("download", download_flood)):
        latencies: list[float] = []
        stop = trio.Event()
        before, started = cpu_ticks(proxy_pid) or 0, time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(PROBES):
                nursery.start_soon(probe, address, latencies, stop)
            if flood is None:
                await trio.sleep(2)
            else:
                await flood(address, chunks)
            stop.set()
        wall = time.perf_counter() - started
        cpu_s = ((cpu_ticks(proxy_pid) or 0) - before) / CLK_TCK
        latencies.sort()
        p50 = statistics.median(latencies) * 1e3
        p99 = latencies[int(len(latencies) * 0.99)] * 1e3
        line = f"probes p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} requests)"
        if flood is not None:
            line += (
                f"; flood {wall:.1f} s, proxy CPU {cpu_s:.1f} s = "
                f"{cpu_s / chunks * 1e6:.1f} us per chunk"
            )
        results[name] = line
        print(f"{name:>8}: {line}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--parser", choices=("h11", "h11-mypyc"), default=None)
    parser.add_argument("--serve-origin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_origin:
        trio.run(serve_origin, args.serve_origin)
        return 0
    registry = ProcessRegistry()
    try:
        port = free_port()
        origin = registry.spawn(
            "origin", [sys.executable, __file__, "--serve-origin", str(port)], cpus="0"
        )
        del origin
        env = dict(os.environ)
        if args.parser:
            env["TRIOPROXY_PARSER"] = args.parser
        config = tempfile.mkdtemp(prefix="flood-")
        proxy = registry.spawn(
            "trioproxy",
            [
                sys.executable,
                "-m",
                "trioproxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                f"127.0.0.1:{port}",
                "--config-dir",
                config,
            ],
            cpus="1",
            env=env,
        )
        ready = proxy.wait_for_line(re.compile(r"listening on 127\.0\.0\.1:(\d+)"), 20)
        if ready is None:
            print("trioproxy did not start:", *proxy.stderr_tail, sep="\n", file=sys.stderr)
            return 1
        address = ("127.0.0.1", int(ready.group(1)))
        os.sched_setaffinity(0, {0})
        trio.run(measure, address, proxy.pid, args.chunks)
    finally:
        registry.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
